//! The config file as written, compiled into the validated [`Config`]: every problem collected
//! with its field path, defaults applied, limits checked.

use super::*;

/// Compiles a parsed config file; relative paths are taken from the file's directory.
pub fn compile(path: &Path, raw: file::ConfigFile) -> Result<Config, ConfigErrors> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut errors = Vec::new();
    let mut err = |p: &str, m: String| errors.push(ConfigError::new(path, p, m));

    if raw.version != CONFIG_VERSION {
        err(
            "version",
            format!(
                "unsupported version {}; this build reads version {CONFIG_VERSION}",
                raw.version
            ),
        );
    }

    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        err(
            "listen",
            format!("{listen_text:?} is not an address like 0.0.0.0:8443"),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    });

    let tls = raw.tls.map(|t| {
        let client_auth_optional = match (t.client_auth.as_deref(), &t.client_ca_file) {
            (None | Some("required"), _) => false,
            (Some("optional"), Some(_)) => true,
            (Some("optional"), None) => {
                err(
                    "tls.client_auth",
                    "optional needs client_ca_file (the CA that issues the certificates callers may present)".into(),
                );
                false
            }
            (Some(other), _) => {
                err(
                    "tls.client_auth",
                    format!("{other:?} is not a mode; use required (default) or optional"),
                );
                false
            }
        };
        TlsConfig {
            cert_file: base.join(t.cert_file),
            key_file: base.join(t.key_file),
            client_ca_file: t.client_ca_file.map(|f| base.join(f)),
            client_auth_optional,
        }
    });

    // stsbridge's own issuer.
    let url = raw.issuer.url.trim_end_matches('/').to_owned();
    if let Err(m) = check_url(&url, true) {
        err("issuer.url", m);
    }
    let algorithm = match raw.issuer.keys.algorithm.as_deref().unwrap_or("RS256") {
        "RS256" => SigningAlgorithm::Rs256,
        "ES256" => SigningAlgorithm::Es256,
        other => {
            err(
                "issuer.keys.algorithm",
                format!("{other:?} is not supported; use RS256 or ES256"),
            );
            SigningAlgorithm::Rs256
        }
    };
    let assertion_lifetime = raw
        .issuer
        .assertion_lifetime
        .map_or(DEFAULT_ASSERTION_LIFETIME, |d| d.0);
    if assertion_lifetime < Duration::from_secs(30) || assertion_lifetime > MAX_ASSERTION_LIFETIME {
        err(
            "issuer.assertion_lifetime",
            format!(
                "{} is out of range; use between 30s and {}",
                format_duration(assertion_lifetime),
                format_duration(MAX_ASSERTION_LIFETIME)
            ),
        );
    }
    let publish_before_use = raw
        .issuer
        .keys
        .publish_before_use
        .map_or(DEFAULT_PUBLISH_BEFORE_USE, |d| d.0);
    if publish_before_use < MIN_PUBLISH_BEFORE_USE {
        err(
            "issuer.keys.publish_before_use",
            format!(
                "{} is shorter than {}: services check their key directory every 2s, and clouds cache JWKS",
                format_duration(publish_before_use),
                format_duration(MIN_PUBLISH_BEFORE_USE)
            ),
        );
    }
    let issuer = IssuerConfig {
        url,
        key_dir: Some(base.join(&raw.issuer.keys.dir)),
        algorithm,
        assertion_lifetime,
        publish_before_use,
    };

    // Trusted issuers.
    let mut trust = Vec::with_capacity(raw.trust.len());
    let mut trust_errors = Vec::new();
    for (i, t) in raw.trust.into_iter().enumerate() {
        trust.push(compile_trust(
            path,
            &base,
            &format!("trust[{i}]"),
            t,
            &mut trust_errors,
        ));
    }
    trust_errors.extend(check_unique_trust(&[(path, trust.as_slice())]));
    trust_errors.extend(check_own_issuer(path, &issuer.url, &trust));

    // Providers.
    let mut aws = AwsSettings::default();
    if let Some(a) = raw.providers.aws {
        if let Some(region) = a.region {
            if region.is_empty()
                || !region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                err(
                    "providers.aws.region",
                    format!("{region:?} is not a region name like us-east-1"),
                );
            }
            aws.region = region;
        }
        if let Some(endpoint) = a.endpoint {
            if let Err(m) = check_url(&endpoint, true) {
                err("providers.aws.endpoint", m);
            }
            aws.endpoint = Some(endpoint);
        }
        if let Some(t) = a.timeout {
            aws.operation_timeout = t.0;
        }
        if let Some(n) = a.max_concurrent {
            aws.max_concurrent = n;
        }
    }
    let aws_max_concurrent = Some(aws.max_concurrent);
    let mut endpoint = |field: &str, value: Option<String>, target: &mut String| {
        if let Some(value) = value {
            match check_url(&value, true) {
                Ok(()) => *target = value.trim_end_matches('/').to_owned(),
                Err(m) => err(field, m),
            }
        }
    };
    let mut gcp = GcpSettings::default();
    let mut azure = AzureSettings::default();
    if let Some(g) = raw.providers.gcp {
        endpoint(
            "providers.gcp.sts_endpoint",
            g.sts_endpoint,
            &mut gcp.sts_endpoint,
        );
        endpoint(
            "providers.gcp.iamcredentials_endpoint",
            g.iamcredentials_endpoint,
            &mut gcp.iamcredentials_endpoint,
        );
        rest_settings(&mut gcp.rest, g.timeout, g.max_concurrent);
    }
    if let Some(a) = raw.providers.azure {
        endpoint(
            "providers.azure.authority_host",
            a.authority_host,
            &mut azure.authority_host,
        );
        rest_settings(&mut azure.rest, a.timeout, a.max_concurrent);
    }
    for (field, value) in [
        ("providers.aws.max_concurrent", aws_max_concurrent),
        (
            "providers.gcp.max_concurrent",
            Some(gcp.rest.max_concurrent),
        ),
        (
            "providers.azure.max_concurrent",
            Some(azure.rest.max_concurrent),
        ),
    ] {
        if value == Some(0) {
            err(field, "must be at least 1".into());
        }
    }

    let max_entries = raw
        .cache
        .and_then(|c| c.max_entries)
        .unwrap_or(DEFAULT_CACHE_ENTRIES);
    if max_entries == 0 {
        err("cache.max_entries", "must be at least 1".into());
    }

    let mut rate = |field: &str, rate: Option<&str>, burst: Option<u32>| -> Option<RateLimit> {
        match rate.map(parse_rate)? {
            Ok(per_second) => {
                let burst = burst.unwrap_or_else(|| (per_second * 2.0).ceil().max(1.0) as u32);
                if burst == 0 {
                    err(
                        &format!("limits.{field}"),
                        "the burst must be at least 1".into(),
                    );
                }
                Some(RateLimit {
                    per_second,
                    burst: burst.max(1),
                })
            }
            Err(m) => {
                err(&format!("limits.{field}"), m);
                None
            }
        }
    };
    let (rate_limit, target_rate_limit) = match &raw.limits {
        None => (None, None),
        Some(l) => (
            rate("per_subject", l.per_subject.as_deref(), l.burst),
            rate("per_target", l.per_target.as_deref(), l.target_burst),
        ),
    };
    let replay_store_entries = raw
        .limits
        .as_ref()
        .and_then(|l| l.replay_store_entries)
        .unwrap_or(DEFAULT_REPLAY_STORE_ENTRIES);
    if !(1..=MAX_REPLAY_STORE_ENTRIES).contains(&replay_store_entries) {
        err(
            "limits.replay_store_entries",
            format!("{replay_store_entries} is not between 1 and {MAX_REPLAY_STORE_ENTRIES}"),
        );
    }
    let failed_validation_limit = match raw.limits.as_ref() {
        None => Some(DEFAULT_FAILED_VALIDATIONS),
        Some(l) => failed_validations(
            l.failed_validations_per_address.as_deref(),
            l.failed_validations_burst,
            &mut err,
        ),
    };

    let fail_open = match raw.audit.as_ref().and_then(|a| a.on_failure.as_deref()) {
        None | Some("closed") => false,
        Some("open") => true,
        Some(other) => {
            err(
                "audit.on_failure",
                format!("{other:?} is not one of closed, open"),
            );
            false
        }
    };
    let sink = match raw.audit {
        None => AuditSinkConfig::Stdout,
        Some(a) => match (a.sink.as_deref(), a.file) {
            (Some("stdout") | None, None) => AuditSinkConfig::Stdout,
            (None, Some(file)) => AuditSinkConfig::File(base.join(file)),
            (Some(other), None) => {
                err(
                    "audit.sink",
                    format!("{other:?} is not a sink; use sink: stdout or file: PATH"),
                );
                AuditSinkConfig::Stdout
            }
            (Some(_), Some(_)) => {
                err(
                    "audit",
                    "set either sink: stdout or file: PATH, not both".into(),
                );
                AuditSinkConfig::Stdout
            }
        },
    };

    let shared_state = raw.shared_state.map(|shared| {
        let r = shared.redis;
        if let Err(m) = check_redis_url(&r.url) {
            err("shared_state.redis.url", m);
        }
        let key_prefix = r.key_prefix.unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
        if key_prefix.is_empty()
            || key_prefix.len() > MAX_KEY_PREFIX
            || !key_prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            err(
                "shared_state.redis.key_prefix",
                format!(
                    "{key_prefix:?} must be 1 to {MAX_KEY_PREFIX} printable ASCII characters without spaces"
                ),
            );
        }
        let timeout = r.timeout.map_or(DEFAULT_SHARED_STATE_TIMEOUT, |d| d.0);
        if !SHARED_STATE_TIMEOUT_RANGE.contains(&timeout) {
            err(
                "shared_state.redis.timeout",
                format!(
                    "{} is out of range; use between {} and {}",
                    format_duration(timeout),
                    format_duration(*SHARED_STATE_TIMEOUT_RANGE.start()),
                    format_duration(*SHARED_STATE_TIMEOUT_RANGE.end())
                ),
            );
        }
        SharedStateConfig {
            url: r.url,
            password_file: r.password_file.map(|f| base.join(f)),
            key_prefix,
            timeout,
        }
    });

    let revocations = match raw.revocations {
        None => RevocationsConfig::default(),
        Some(r) => {
            let max_for = r.max_for.map_or(DEFAULT_MAX_REVOCATION, |d| d.0);
            if max_for < DEFAULT_REVOCATION {
                err(
                    "revocations.max_for",
                    format!(
                        "{} is shorter than a revocation's default length ({}); use at least that",
                        format_duration(max_for),
                        format_duration(DEFAULT_REVOCATION)
                    ),
                );
            }
            if r.file.is_some() && shared_state.is_some() {
                err(
                    "revocations.file",
                    "with shared_state, revocations live in Redis (every replica sees them); remove revocations.file".into(),
                );
            }
            RevocationsConfig {
                file: r.file.map(|f| base.join(f)),
                max_for,
            }
        }
    };

    let dpop_max_age = raw
        .dpop
        .and_then(|d| d.max_age)
        .map_or(DEFAULT_DPOP_MAX_AGE, |d| d.0);
    if dpop_max_age.is_zero() || dpop_max_age > Duration::from_secs(600) {
        err(
            "dpop.max_age",
            format!(
                "{} is out of range; use between 1s and 10m",
                format_duration(dpop_max_age)
            ),
        );
    }

    let ops_listen = raw.ops.and_then(|ops| match ops.listen.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 && addr.port() == listen.port() && (addr.ip() == listen.ip() || addr.ip().is_unspecified() || listen.ip().is_unspecified()) => {
            errors.push(ConfigError::new(
                path,
                "ops.listen",
                format!("{:?} is the main listener's address; give the operations listener its own port", ops.listen),
            ));
            None
        }
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.push(ConfigError::new(
                path,
                "ops.listen",
                format!("{:?} is not an address like 127.0.0.1:9090", ops.listen),
            ));
            None
        }
    });

    errors.extend(trust_errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        source: Some(path.to_path_buf()),
        listen,
        tls,
        issuer,
        trust,
        mappings_dir: base.join(raw.mappings.unwrap_or_else(|| PathBuf::from("mappings"))),
        aws,
        gcp,
        azure,
        cache: CacheConfig { max_entries },
        rate_limit,
        target_rate_limit,
        replay_store_entries,
        failed_validation_limit,
        audit: AuditConfig { sink, fail_open },
        shared_state,
        revocations,
        dpop_max_age,
        ops_listen,
    })
}

/// `limits.failed_validations_per_address` and `failed_validations_burst`: a rate (default 10/s),
/// with a burst (default 50, or five seconds' worth of a rate given without one), or `off`.
fn failed_validations(
    rate: Option<&str>,
    burst: Option<u32>,
    err: &mut impl FnMut(&str, String),
) -> Option<RateLimit> {
    let per_second = match rate {
        None => DEFAULT_FAILED_VALIDATIONS.per_second,
        Some("off") => return None,
        Some(text) => match parse_rate(text) {
            Ok(per_second) => per_second,
            Err(m) => {
                err(
                    "limits.failed_validations_per_address",
                    format!("{m}, or off"),
                );
                DEFAULT_FAILED_VALIDATIONS.per_second
            }
        },
    };
    let burst = match (rate, burst) {
        (_, Some(0)) => {
            err(
                "limits.failed_validations_burst",
                "must be at least 1".into(),
            );
            1
        }
        (_, Some(burst)) => burst,
        (None, None) => DEFAULT_FAILED_VALIDATIONS.burst,
        (Some(_), None) => (per_second * 5.0).ceil().max(1.0) as u32,
    };
    Some(RateLimit { per_second, burst })
}

fn rest_settings(
    rest: &mut RestSettings,
    timeout: Option<ConfigDuration>,
    max_concurrent: Option<usize>,
) {
    if let Some(t) = timeout {
        rest.attempt_timeout = t.0;
    }
    if let Some(n) = max_concurrent {
        rest.max_concurrent = n;
    }
}
