//! The command line: `check` and `explain` exit codes and messages, and dev mode's printed
//! commands completing an exchange.

use std::path::Path;
use std::process::Command;

use serde_json::json;
use stsbridge_e2e::{BridgeProcess, TestIdp};

use crate::{BIN, Setup, write_config};

/// Runs the binary in `dir`: exit code, stdout, stderr.
pub fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `stsbridge explain --config stsbridge.yaml --token-file TOKEN --target TARGET EXTRA...` in `dir`.
fn explain(dir: &Path, token: &str, target: &str, extra: &[&str]) -> (i32, String, String) {
    let args = [
        "explain",
        "--config",
        "stsbridge.yaml",
        "--token-file",
        token,
        "--target",
        target,
    ];
    run(dir, &[&args[..], extra].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_0_or_64_naming_file_field_and_value() {
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &idp, &Setup::default());
    let (code, out, err) = run(dir.path(), &["check", "--config", "stsbridge.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("7 target(s) and 3 rule(s)"), "{out}");

    std::fs::write(
        dir.path().join("mappings/bad.yaml"),
        "version: 1\nrules:\n  - { name: x, issuer: ci, subject: s, allow: [nope] }\n",
    )
    .unwrap();
    let (code, _, err) = run(dir.path(), &["check", "--config", "stsbridge.yaml"]);
    assert_eq!(code, 64);
    assert!(
        err.contains("mappings/bad.yaml: rules[0].allow[0]: rule \"x\": \"nope\" is not a target"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("stsbridge.yaml"),
        "version: 1\nissuer: { url: https://x, keys: { dir: k }, assertion_lifetime: soon }\n",
    )
    .unwrap();
    let (code, _, err) = run(dir.path(), &["check", "--config", "stsbridge.yaml"]);
    assert_eq!(code, 64);
    assert!(
        err.contains("stsbridge.yaml: issuer.assertion_lifetime: invalid duration \"soon\""),
        "{err}"
    );

    // serve refuses the same config before binding anything.
    let (code, _, _) = run(dir.path(), &["serve", "--config", "stsbridge.yaml"]);
    assert_eq!(code, 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_each_condition_and_the_rendered_request() {
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &idp, &Setup::default());
    let token = idp.token("repo:acme/app:ref:refs/heads/main", json!({ "repository_owner": "evil", "run_id": "7", "repository": "acme/app", "actor": "octocat" }));
    std::fs::write(dir.path().join("token"), &token).unwrap();
    let (code, out, err) = explain(dir.path(), "token", "deploy", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rule main-deploys (allow"), "{out}");
    assert!(
        out.contains("[pass] subject == \"repo:acme/app:ref:refs/heads/main\""),
        "{out}"
    );
    assert!(
        out.contains("[FAIL] repository_owner == \"acme\" (token: \"evil\")"),
        "{out}"
    );
    assert!(
        out.contains("decision: deny (no allow rule matches)"),
        "{out}"
    );

    let token = idp.token("repo:acme/app:ref:refs/heads/main", json!({ "repository_owner": "acme", "run_id": "7", "repository": "acme/app", "actor": "octocat" }));
    std::fs::write(dir.path().join("token"), &token).unwrap();
    let (code, out, _) = explain(dir.path(), "token", "deploy", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("decision: allow (rule main-deploys)"), "{out}");
    assert!(out.contains("session_name: \"gh-7\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_prints_commands_that_complete_an_exchange() {
    // Dev mode is what a newcomer runs from the repository root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dev = BridgeProcess::spawn(BIN, root, &["serve", "--listen", "127.0.0.1:0"], &[]).await;
    let banner = dev.stdout();
    let token = banner
        .lines()
        .find_map(|l| {
            l.strip_prefix("export TOKEN='")
                .and_then(|t| t.strip_suffix('\''))
        })
        .unwrap_or_else(|| panic!("no token in the banner:\n{banner}"));
    let exchange = banner
        .lines()
        .find(|l| l.starts_with("curl -s ") && l.contains("/oauth2/token"))
        .expect("an exchange command");
    assert!(exchange.contains(&dev.base), "{exchange}");

    // The printed command, as curl would send it.
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut words = exchange.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-d" {
            let field = words
                .next()
                .unwrap()
                .trim_matches('"')
                .replace("$TOKEN", token);
            let (k, v) = field.split_once('=').unwrap();
            fields.push((k.into(), v.into()));
        }
    }
    let http = reqwest::Client::new();
    let r = http
        .post(dev.url("/oauth2/token"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["access_token"].as_str().unwrap().starts_with("ey"));

    let r = http
        .get(dev.url("/v1/credentials/hello-api"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Dev mode never listens beyond loopback.
    let (code, _, err) = run(root, &["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(code, 64, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_example_config_checks_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let (code, out, err) = run(
        root,
        &["check", "--config", "examples/production/stsbridge.yaml"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("5 trusted issuer(s)"), "{out}");
}

#[test]
fn version_names_the_release_the_git_revision_and_the_features() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(dir.path(), &["--version"]);
    assert_eq!(code, 0, "{err}");
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(crate::repo())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        );
    assert_eq!(
        out.trim(),
        format!(
            "stsbridge {} (git {revision}; features: otlp)",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_fetches_every_issuers_keys_and_says_why_one_cannot_be_fetched() {
    use stsbridge_e2e::tls::localhost_pki;
    // An HTTPS server whose certificate no system root vouches for: another stsbridge.
    let pki = localhost_pki();
    let tls_dir = tempfile::tempdir().unwrap();
    std::fs::write(tls_dir.path().join("cert.pem"), &pki.cert_pem).unwrap();
    std::fs::write(tls_dir.path().join("key.pem"), &pki.key_pem).unwrap();
    let tls = format!(
        "tls: {{ cert_file: \"{}\", key_file: \"{}\" }}",
        tls_dir.path().join("cert.pem").display(),
        tls_dir.path().join("key.pem").display()
    );
    let untrusted = crate::Stack::start(Setup {
        extra: &tls,
        ..Setup::default()
    })
    .await;

    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &idp, &Setup::default());
    let config = std::fs::read_to_string(&path).unwrap().replace(
        "mappings: mappings",
        &format!(
            "  - {{ name: refused, issuer: \"http://127.0.0.1:9\", audiences: [x], jwks: {{ discovery: true }}, allow_insecure_loopback: true }}\n  - {{ name: untrusted, issuer: \"{}\", audiences: [x], jwks: {{ discovery: true }} }}\nmappings: mappings",
            untrusted.bridge.base
        ),
    );
    std::fs::write(&path, config).unwrap();

    // Offline, the files are fine.
    let (code, _, err) = run(dir.path(), &["check", "--config", "stsbridge.yaml"]);
    assert_eq!(code, 0, "{err}");
    // Online, each issuer is fetched; the failures say why, down to the cause.
    let (code, out, err) = run(
        dir.path(),
        &["check", "--config", "stsbridge.yaml", "--online"],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("ok: issuer ci: 1 key(s)"), "{out}");
    let line = |name: &str| {
        err.lines()
            .find(|l| l.starts_with(&format!("error: issuer {name}: ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{err}"))
            .to_owned()
    };
    let refused = line("refused");
    assert!(refused.contains("could not connect"), "{refused}");
    assert!(refused.contains("Connection refused"), "{refused}");
    let untrusted = line("untrusted");
    assert!(
        untrusted.contains("certificate") && untrusted.contains("UnknownIssuer"),
        "{untrusted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_what_serve_would_stop_on_the_tls_files_and_warns_of_the_audit_directory() {
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &idp,
        &Setup {
            extra: "tls: { cert_file: missing-cert.pem, key_file: missing-key.pem }",
            audit: Some("{ file: no-such-dir/audit.jsonl }"),
            ..Setup::default()
        },
    );
    let (code, _, err) = run(dir.path(), &["check", "--config", "stsbridge.yaml"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("error: ")
            && l.contains("stsbridge.yaml: tls:")
            && l.contains("missing-cert.pem")),
        "{err}"
    );
    // An output location the deployment may create: a warning.
    assert!(
        err.lines().any(|l| l.starts_with("warning: ")
            && l.contains("audit.sink.file")
            && l.contains("does not exist")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_tokens_refuse_mistakes_with_json_and_the_banners_command_stops_on_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dev = BridgeProcess::spawn(BIN, root, &["serve", "--listen", "127.0.0.1:0"], &[]).await;
    let r = reqwest::Client::new()
        .post(dev.url("/dev/token"))
        .form(&[("issuer", "github"), ("claims", "not json")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("JSON object"),
        "{body}"
    );

    // The banner's minting command, run by a shell as printed, and with a mistake in it.
    let banner = dev.stdout();
    let mint = banner
        .lines()
        .find(|l| l.starts_with("GH=$(curl"))
        .unwrap_or_else(|| panic!("no minting command in the banner:\n{banner}"));
    let sh = |line: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("{line}\necho \"GH=$GH\""))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let good = sh(mint);
    assert!(good.contains("GH=ey"), "{good}");
    let bad = sh(&mint.replace("issuer=github", "issuer=gitlab"));
    assert!(bad.contains("no token: {"), "{bad}");
    assert!(bad.contains("no built-in issuer"), "{bad}");
    assert!(bad.trim_end().ends_with("GH="), "{bad}");
    assert!(
        banner.contains("pip install 'moto[server]'"),
        "the banner says how to start moto:\n{banner}"
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_stsbridge()"),
        ("zsh", "#compdef stsbridge"),
        ("fish", "complete -c stsbridge"),
    ] {
        let (code, out, err) = run(dir.path(), &["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(marker), "{shell}: {out}");
        assert!(out.contains("credential-process"), "{shell}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_for_a_near_miss_issuer_or_a_wrong_audience_say_what_to_fix() {
    let stack = crate::Stack::start(Setup::default()).await;
    // The issuer's URL with a trailing slash: not trusted, and the caller is told why it looks
    // so close; the operator is told which entry it nearly matches.
    let near = stack.idp.token(
        "svc:alice",
        json!({ "iss": format!("{}/", stack.idp.issuer) }),
    );
    let (status, body, _) = stack.credentials("api", &format!("Bearer {near}")).await;
    assert_eq!(status, 401, "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("unknown_issuer"), "{description}");
    assert!(
        description.contains("only by a trailing slash or letter case"),
        "{description}"
    );
    assert!(
        !description.contains(&stack.idp.issuer),
        "the caller is not told the URL: {description}"
    );
    let decision = body["decision_id"].as_str().unwrap();
    let event = stack.bridge.audit_event(decision).await;
    let hint = event["hint"].as_str().unwrap_or_else(|| panic!("{event}"));
    assert!(
        hint.contains("trust entry ci") && hint.contains(&stack.idp.issuer),
        "{hint}"
    );

    // A wrong audience: the accepted audiences go to the log, never to the caller.
    let wrong = stack
        .idp
        .token("svc:alice", json!({ "aud": "https://other.example" }));
    let (status, body, _) = stack.credentials("api", &format!("Bearer {wrong}")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.to_string().contains(stsbridge_e2e::BRIDGE_URL),
        "the accepted audiences are not told to the caller: {body}"
    );
    let logged = |l: &str| {
        l.contains("audience_mismatch")
            && l.contains("\\\"https://other.example\\\"")
            && l.contains(stsbridge_e2e::BRIDGE_URL)
    };
    let log = stack.bridge.stderr_once(logged).await;
    assert!(log.lines().any(logged), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_works_in_dev_mode_with_json_output_and_expected_beside_received() {
    // A denial in dev mode, on a port of its own: its 403 points at explain, which must work.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dev = BridgeProcess::spawn(BIN, root, &["serve", "--listen", "127.0.0.1:0"], &[]).await;
    let http = reqwest::Client::new();
    let gh = stsbridge_e2e::text_of(http.post(dev.url("/dev/token")).form(&[
        ("issuer", "github"),
        ("sub", "repo:acme/payments:ref:refs/heads/feature"),
        ("claims", r#"{"repository_owner":"acme","run_id":"7"}"#),
    ]))
    .await;
    let denied = http
        .get(dev.url("/v1/credentials/payments-prod-deploy"))
        .bearer_auth(gh.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("gh");
    std::fs::write(&token_file, gh.trim()).unwrap();
    let file = token_file.to_str().unwrap();
    let args = [
        "explain",
        "--token-file",
        file,
        "--target",
        "payments-prod-deploy",
    ];
    let (code, out, err) = run(root, &args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("token: issuer github"), "{out}");
    assert!(out.contains("decision: deny"), "{out}");

    let (code, out, err) = run(root, &[&args[..], &["--output", "json"]].concat());
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["token"]["trust_entry"], "github");
    assert_eq!(report["decision"]["decision"], "deny");
    let failed: Vec<&serde_json::Value> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["conditions"].as_array().unwrap())
        .filter(|c| c["pass"] == false)
        .collect();
    assert!(
        failed
            .iter()
            .all(|c| c["expected"].is_string() && c.get("received").is_some()),
        "{report}"
    );
    assert!(
        report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["subject"]["pass"] == false
                && r["subject"]["received"] == "repo:acme/payments:ref:refs/heads/feature"),
        "{report}"
    );

    // A token of an issuer dev mode does not have: the issuers it has beside the one it got.
    let idp = TestIdp::start().await;
    std::fs::write(&token_file, idp.token("svc:x", json!({}))).unwrap();
    let (code, out, _) = run(root, &[&args[..], &["--output", "json"]].concat());
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["refused"]["reason"], "unknown_issuer", "{report}");
    assert_eq!(report["refused"]["received"], idp.issuer.as_str());
    assert!(
        report["refused"]["expected"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.as_str().is_some_and(|i| i.ends_with("/dev/github"))),
        "{report}"
    );

    // A wrong audience, with a config: the entry's audiences beside the token's.
    write_config(dir.path(), &idp, &Setup::default());
    std::fs::write(
        &token_file,
        idp.token("svc:x", json!({ "aud": "https://elsewhere.example" })),
    )
    .unwrap();
    let (code, out, _) = explain(dir.path(), file, "api", &["--output", "json"]);
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["claims"]["reason"], "audience_mismatch", "{report}");
    assert_eq!(report["claims"]["received"], "https://elsewhere.example");
    assert_eq!(report["claims"]["expected"][0], stsbridge_e2e::BRIDGE_URL);
}

/// Every shipped file of each kind the schemas describe.
fn shipped_files(kind: &str) -> Vec<std::path::PathBuf> {
    let root = crate::repo();
    let yaml_in = |dir: &str| -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        files
    };
    match kind {
        "config" => vec![
            root.join("examples/production/stsbridge.yaml"),
            root.join("examples/kubernetes/config/stsbridge.yaml"),
        ],
        "mappings" => [yaml_in("mappings"), yaml_in("examples/kubernetes/mappings")].concat(),
        _ => yaml_in("mappings/tests"),
    }
}

#[test]
fn the_schemas_are_what_stsbridge_schema_prints_and_every_shipped_file_validates_against_them() {
    let root = crate::repo();
    let validator = stsbridge_e2e::moto::venv_program("check-jsonschema");
    for kind in ["config", "mappings", "tests"] {
        let (code, out, err) = run(&root, &["schema", kind]);
        assert_eq!(code, 0, "{err}");
        let committed =
            std::fs::read_to_string(root.join(format!("schemas/{kind}.schema.json"))).unwrap();
        assert!(
            committed.trim() == out.trim(),
            "schemas/{kind}.schema.json is not what `stsbridge schema {kind}` prints: regenerate it"
        );
        let files = shipped_files(kind);
        assert!(!files.is_empty());
        for file in &files {
            // The modeline points the editor at this schema.
            let first = std::fs::read_to_string(file).unwrap();
            let first = first.lines().next().unwrap_or_default();
            let path = first
                .strip_prefix("# yaml-language-server: $schema=")
                .unwrap_or_else(|| panic!("{}: no schema modeline", file.display()));
            let schema = file.parent().unwrap().join(path);
            assert_eq!(
                schema.canonicalize().unwrap(),
                root.join(format!("schemas/{kind}.schema.json"))
                    .canonicalize()
                    .unwrap(),
                "{}",
                file.display()
            );
        }
        // An independent validator (check-jsonschema, on the jsonschema library).
        stsbridge_e2e::run_ok(
            Command::new(&validator)
                .arg("--schemafile")
                .arg(root.join(format!("schemas/{kind}.schema.json")))
                .args(&files),
        );
    }
    // The validator refuses what stsbridge refuses: a misspelt key.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nrules:\n  - { name: x, issuer: ci, subjekt: s, allow: [a] }\n",
    )
    .unwrap();
    let out = Command::new(&validator)
        .arg("--schemafile")
        .arg(root.join("schemas/mappings.schema.json"))
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("subjekt"));
}
