use super::*;

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("stsbridge.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

const DESIGN_EXAMPLE: &str = r#"
version: 1
listen: 0.0.0.0:8443
issuer:
  url: https://sts.example.com
  keys: { dir: /var/lib/stsbridge/keys, algorithm: RS256 }
  assertion_lifetime: 5m
trust:
  - name: github
    issuer: https://token.actions.githubusercontent.com
    audiences: [https://sts.example.com]
    jwks: { discovery: true }
    allow_insecure_loopback: false
    algorithms: [RS256]
    leeway: 30s
    max_token_lifetime: 1h
    replay: reject
mappings: ./mappings
providers:
  aws:   { region: us-east-1 }
  gcp:   { sts_endpoint: https://sts.googleapis.com, iamcredentials_endpoint: https://iamcredentials.googleapis.com }
  azure: { authority_host: https://login.microsoftonline.com }
cache: { max_entries: 100000 }
limits: { per_subject: "20/s", burst: 40 }
audit: { sink: stdout }
"#;

#[test]
fn the_design_example_loads() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(&write(dir.path(), DESIGN_EXAMPLE)).unwrap();
    assert_eq!(c.listen, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(c.issuer.assertion_lifetime, Duration::from_secs(300));
    assert_eq!(c.trust[0].jwks, JwksSource::Discovery);
    assert!(c.trust[0].replay_reject);
    assert_eq!(c.mappings_dir, dir.path().join("./mappings"));
    assert_eq!(
        c.rate_limit,
        Some(RateLimit {
            per_second: 20.0,
            burst: 40
        })
    );
    assert_eq!(
        c.audit,
        AuditConfig {
            sink: AuditSinkConfig::Stdout,
            fail_open: false
        }
    );
}

fn errors_of(text: &str) -> Vec<ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    load(&write(dir.path(), text)).unwrap_err().0
}

const MINIMAL: &str = "version: 1\nissuer: { url: https://sts.example.com, keys: { dir: keys } }\n";

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let e = errors_of(&format!(
        "{MINIMAL}cache: {{ max_entries: 5, max_entires: 6 }}\n"
    ));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "cache.max_entires");
    assert!(
        e[0].message.starts_with("unknown field `max_entires`"),
        "{}",
        e[0].message
    );
}

#[test]
fn bad_durations_name_field_and_value() {
    let e = errors_of(
        "version: 1\nissuer: { url: https://sts.example.com, keys: { dir: k }, assertion_lifetime: 5 minutes }\n",
    );
    assert_eq!(e[0].path, "issuer.assertion_lifetime");
    assert!(e[0].message.contains("\"5 minutes\""), "{}", e[0].message);
    assert!(
        e[0].to_string()
            .contains("stsbridge.yaml: issuer.assertion_lifetime:"),
        "{}",
        e[0]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = errors_of(
        r#"
version: 2
listen: nowhere
issuer: { url: "http://sts.example.com", keys: { dir: k, algorithm: HS256 } }
trust:
  - { name: a, issuer: "https://a", audiences: [], jwks: { uri: "http://idp.example.com/jwks" }, algorithms: [HS256, none, RS999] }
  - { name: a, issuer: "https://a", audiences: [x], jwks: { discovery: true, file: k.json } }
audit: { sink: syslog }
"#,
    );
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "version",
        "listen",
        "issuer.url",
        "issuer.keys.algorithm",
        "trust[0].audiences",
        "trust[0].jwks.uri",
        "trust[0].algorithms[0]",
        "trust[0].algorithms[1]",
        "trust[0].algorithms[2]",
        "trust[1].name",
        "trust[1].issuer",
        "trust[1].jwks",
        "audit.sink",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    let hmac = e
        .iter()
        .find(|e| e.path == "trust[0].algorithms[0]")
        .unwrap();
    assert!(hmac.message.contains("HMAC"), "{}", hmac.message);
}

#[test]
fn plain_http_only_to_loopback_and_only_when_allowed() {
    let trust = |uri: &str, allow: bool| {
        format!(
            "{MINIMAL}trust:\n  - {{ name: t, issuer: \"https://t\", audiences: [a], jwks: {{ uri: \"{uri}\" }}, allow_insecure_loopback: {allow} }}\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    assert!(load(&write(dir.path(), &trust("http://127.0.0.1:9/jwks", true))).is_ok());
    assert!(load(&write(dir.path(), &trust("http://127.0.0.1:9/jwks", false))).is_err());
    assert!(load(&write(dir.path(), &trust("http://10.0.0.1/jwks", true))).is_err());
    assert!(
        load(&write(
            dir.path(),
            &trust("https://idp.example.com/jwks", false)
        ))
        .is_ok()
    );
    assert!(check_url("http://[::1]:5000", true).is_ok());
    assert!(check_url("ftp://x", true).is_err());
}

#[test]
fn rates_parse() {
    assert_eq!(parse_rate("20/s"), Ok(20.0));
    assert_eq!(parse_rate("600/m"), Ok(10.0));
    assert!(parse_rate("0/s").is_err());
    assert!(parse_rate("fast").is_err());
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let e = load(Path::new("/nonexistent/stsbridge.yaml")).unwrap_err();
    assert!(e.to_string().contains("cannot read the file"), "{e}");
}

#[test]
fn the_replay_store_holds_a_million_by_default_and_its_bound_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(&write(dir.path(), MINIMAL)).unwrap();
    assert_eq!(c.replay_store_entries, 1_000_000);
    let c = load(&write(
        dir.path(),
        &format!("{MINIMAL}limits: {{ replay_store_entries: 2 }}\n"),
    ))
    .unwrap();
    assert_eq!(c.replay_store_entries, 2);
    for bad in ["0", "100000001"] {
        let e = errors_of(&format!(
            "{MINIMAL}limits: {{ replay_store_entries: {bad} }}\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].path, "limits.replay_store_entries");
        assert!(e[0].message.starts_with(bad), "{}", e[0].message);
    }
    let e = errors_of(&format!("{MINIMAL}limits: {{ replay_entries: 5 }}\n"));
    assert_eq!(e[0].path, "limits.replay_entries");
}

#[test]
fn the_failed_validation_limit_is_on_by_default_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(&write(dir.path(), MINIMAL)).unwrap();
    assert_eq!(
        c.failed_validation_limit,
        Some(RateLimit {
            per_second: 10.0,
            burst: 50
        })
    );
    let limit = |limits: &str| {
        load(&write(
            dir.path(),
            &format!("{MINIMAL}limits: {{ {limits} }}\n"),
        ))
        .unwrap()
        .failed_validation_limit
    };
    assert_eq!(
        limit("failed_validations_per_address: 600/m, failed_validations_burst: 7"),
        Some(RateLimit {
            per_second: 10.0,
            burst: 7
        })
    );
    // A rate without a burst gets five seconds' worth; other limits leave the default on.
    assert_eq!(
        limit("failed_validations_per_address: 2/s"),
        Some(RateLimit {
            per_second: 2.0,
            burst: 10
        })
    );
    assert_eq!(limit("per_subject: 20/s"), Some(DEFAULT_FAILED_VALIDATIONS));
    // `off` turns it off (behind a proxy every caller shares one address).
    assert_eq!(limit("failed_validations_per_address: off"), None);

    let e = errors_of(&format!(
        "{MINIMAL}limits: {{ failed_validations_per_address: lots, failed_validations_burst: 0 }}\n"
    ));
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "limits.failed_validations_per_address",
            "limits.failed_validations_burst"
        ],
        "{e:?}"
    );
}

#[test]
fn shared_state_as_the_design_writes_it_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(&write(
        dir.path(),
        &format!(
            "{MINIMAL}shared_state:\n  redis:\n    url: rediss://redis.internal:6379/0\n    password_file: secrets/redis\n    key_prefix: \"sts-prod:\"\n    timeout: 250ms\n"
        ),
    ))
    .unwrap();
    assert_eq!(
        c.shared_state,
        Some(SharedStateConfig {
            url: "rediss://redis.internal:6379/0".into(),
            password_file: Some(dir.path().join("secrets/redis")),
            key_prefix: "sts-prod:".into(),
            timeout: Duration::from_millis(250),
        })
    );
    let c = load(&write(
        dir.path(),
        &format!("{MINIMAL}shared_state: {{ redis: {{ url: \"redis://127.0.0.1:6379\" }} }}\n"),
    ))
    .unwrap();
    let shared = c.shared_state.unwrap();
    assert_eq!(shared.key_prefix, "stsbridge:");
    assert_eq!(shared.timeout, Duration::from_millis(250));
    assert_eq!(shared.password_file, None);
    assert!(
        load(&write(dir.path(), MINIMAL))
            .unwrap()
            .shared_state
            .is_none()
    );
}

#[test]
fn shared_state_is_checked_naming_field_and_value() {
    let case = |redis: &str| {
        errors_of(&format!(
            "{MINIMAL}shared_state: {{ redis: {{ {redis} }} }}\n"
        ))
    };
    for (redis, path, says) in [
        (
            "url: \"redis://redis.internal:6379\"",
            "shared_state.redis.url",
            "rediss://",
        ),
        (
            "url: \"rediss://:hunter2@redis.internal\"",
            "shared_state.redis.url",
            "password_file",
        ),
        (
            "url: \"https://redis.internal\"",
            "shared_state.redis.url",
            "\"https\"",
        ),
        (
            "url: \"rediss://redis.internal/x\"",
            "shared_state.redis.url",
            "database",
        ),
        (
            "url: \"rediss://r\", key_prefix: \"has space\"",
            "shared_state.redis.key_prefix",
            "\"has space\"",
        ),
        (
            "url: \"rediss://r\", key_prefix: \"\"",
            "shared_state.redis.key_prefix",
            "printable",
        ),
        (
            "url: \"rediss://r\", timeout: 1ms",
            "shared_state.redis.timeout",
            "1ms",
        ),
        (
            "url: \"rediss://r\", timeout: 1m",
            "shared_state.redis.timeout",
            "1m",
        ),
        (
            "url: \"rediss://r\", pasword_file: p",
            "shared_state.redis.pasword_file",
            "unknown field",
        ),
    ] {
        let e = case(redis);
        assert_eq!(e.len(), 1, "{redis}: {e:?}");
        assert_eq!(e[0].path, path, "{redis}");
        assert!(e[0].message.contains(says), "{redis}: {}", e[0].message);
    }
    // A password never shows in the error.
    let e = case("url: \"rediss://:hunter2@redis.internal\"");
    assert!(!e[0].to_string().contains("hunter2"), "{}", e[0]);
    for ok in [
        "redis://localhost:6379/2",
        "redis://[::1]:6379",
        "rediss://user@r.example.com",
    ] {
        assert!(check_redis_url(ok).is_ok(), "{ok}");
    }
}

#[test]
fn optional_client_certificates_need_a_client_ca() {
    let tls =
        |extra: &str| format!("{MINIMAL}tls: {{ cert_file: c.pem, key_file: k.pem{extra} }}\n");
    let errs = errors_of(&tls(", client_auth: optional"));
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("tls.client_auth")
                && e.to_string().contains("client_ca_file")),
        "{errs:?}"
    );
    let errs = errors_of(&tls(", client_ca_file: ca.pem, client_auth: sometimes"));
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("\"sometimes\" is not a mode")),
        "{errs:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(
        dir.path(),
        &tls(", client_ca_file: ca.pem, client_auth: optional"),
    ))
    .unwrap();
    assert!(config.tls.unwrap().client_auth_optional);
}

#[test]
fn revocations_take_a_file_and_a_longest_length_but_not_beside_shared_state() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(
        dir.path(),
        &format!("{MINIMAL}revocations: {{ file: state/revocations.json, max_for: 7d }}\n"),
    ))
    .unwrap();
    assert_eq!(
        config.revocations.file,
        Some(dir.path().join("state/revocations.json"))
    );
    assert_eq!(
        config.revocations.max_for,
        Duration::from_secs(7 * 24 * 3600)
    );
    let errs = errors_of(&format!("{MINIMAL}revocations: {{ max_for: 1h }}\n"));
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("revocations.max_for")),
        "{errs:?}"
    );
    let errs = errors_of(&format!(
        "{MINIMAL}revocations: {{ file: r.json }}\nshared_state: {{ redis: {{ url: \"redis://127.0.0.1:6379\" }} }}\n"
    ));
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("revocations.file")),
        "{errs:?}"
    );
}

#[test]
fn the_operations_listener_needs_an_address_of_its_own() {
    let e = errors_of(&format!(
        "{MINIMAL}listen: 0.0.0.0:8443\nops: {{ listen: 127.0.0.1:8443 }}\n"
    ));
    assert_eq!(e[0].path, "ops.listen");
    assert!(e[0].message.contains("its own port"), "{}", e[0].message);
    let e = errors_of(&format!("{MINIMAL}ops: {{ listen: metrics }}\n"));
    assert_eq!(e[0].path, "ops.listen");
    assert!(e[0].message.contains("127.0.0.1:9090"), "{}", e[0].message);
    let dir = tempfile::tempdir().unwrap();
    let config = load(&write(
        dir.path(),
        &format!("{MINIMAL}listen: 0.0.0.0:8443\nops: {{ listen: 0.0.0.0:9090 }}\n"),
    ))
    .unwrap();
    assert_eq!(config.ops_listen, Some("0.0.0.0:9090".parse().unwrap()));
}

#[test]
fn every_structural_error_of_a_file_is_reported_not_only_the_first() {
    let e = errors_of(&format!(
        "{MINIMAL}cache: {{ max_entires: 5 }}\nlimits: {{ per_subjekt: 10/s }}\ntrust:\n  - {{ name: a, issuer: https://a.example, audiences: [x], jwks: {{ discovery: true }} }}\n  - {{ name: b, issuer: https://b.example, audience: [x], jwks: {{ discovery: true }} }}\n  - {{ name: c, issuer: https://c.example, audiences: [x], jwks: {{ discovery: true }} }}\n  - {{ name: d, issuer: https://d.example, audiences: [x], jwks: {{ discover: true }} }}\n"
    ));
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths.len(), 4, "{e:?}");
    // List items keep their index in the file although the ones before them were taken out.
    for want in [
        "cache.max_entires",
        "limits.per_subjekt",
        "trust[1].audience",
        "trust[3].jwks.discover",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
}

#[test]
fn taking_a_broken_required_key_out_adds_no_error_of_its_own() {
    // One mistake in a required field: one error, not a second "missing field" one.
    let e = errors_of(
        "version: 1\nissuer: { url: https://x, keys: { dir: k }, assertion_lifetime: [5] }\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "issuer.assertion_lifetime");
    // Two unknown keys in one section: both, and a sibling after them still checked.
    let e = errors_of(&format!(
        "{MINIMAL}cache: {{ max_entires: 5, maxentries: 6 }}\naudit: {{ sink: stdout, on_fail: open }}\n"
    ));
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    for want in ["cache.max_entires", "cache.maxentries", "audit.on_fail"] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
}
