//! The commands that need no running service: `check`, `explain`, `test`, `terraform-vars`,
//! `issuer export`, `keys rotate`, `partner init`.

use super::*;

pub(super) fn export_issuer(path: &Path, out: &Path) -> ExitCode {
    let config = match or_config_errors(config::load(path)) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match issuer::export(&config.issuer, out) {
        Ok(exported) => {
            let url = &config.issuer.url;
            println!(
                "wrote {} and {} ({} key(s): {})",
                exported.discovery.display(),
                exported.jwks.display(),
                exported.kids.len(),
                exported.kids.join(", ")
            );
            println!(
                "serve them at {url}/.well-known/openid-configuration and {url}/.well-known/jwks.json \
                 (content type application/json); export and upload again after every \
                 `stsbridge keys rotate`, before the new key starts signing"
            );
            ExitCode::SUCCESS
        }
        Err(e @ issuer::IssuerError::NoKeys(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

pub(super) fn rotate_keys(path: &Path, prune: bool) -> ExitCode {
    let config = match or_config_errors(config::load(path)) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let now = SystemTime::now();
    match issuer::rotate(&config.issuer, prune, now) {
        Ok((kid, pruned)) => {
            let from = crate::audit::rfc3339(now + config.issuer.publish_before_use);
            println!(
                "staged key {kid}: published at once by running services, signing from {from}"
            );
            for file in pruned {
                println!("pruned {}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

pub(super) fn check(path: &Path, online: bool) -> ExitCode {
    let (config, mappings) = match or_config_errors(load_all(path)) {
        Ok(v) => v,
        Err(code) => return code,
    };
    // What `serve` would stop on after the files load: the TLS files, the audit file's directory.
    let mut problems = Vec::new();
    if let Some(tls) = &config.tls
        && let Err(m) = crate::tls::server_config(tls)
    {
        problems.push(format!("tls: {m}"));
    }
    // The audit file is an output: its directory may be made by the deployment (systemd's
    // LogsDirectory, a volume), so a missing one here is a warning, not an error.
    if let crate::config::AuditSinkConfig::File(file) = &config.audit.sink
        && let Some(m) = audit_file_problem(file)
    {
        eprintln!(
            "warning: {}: audit.sink.file: {}: {m}; serve cannot start until it can append there",
            path.display(),
            file.display()
        );
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {}: {p}", path.display());
        }
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Some(dir) = &config.issuer.key_dir
        && let Err(e) = issuer::check_key_dir(dir)
    {
        eprintln!("error: {}: issuer.keys.dir: {e}", path.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Some(file) = config
        .shared_state
        .as_ref()
        .and_then(|s| s.password_file.as_ref())
        && let Err(e) = crate::shared::read_password(file)
    {
        eprintln!(
            "error: {}: shared_state.redis.password_file: {}: {e}",
            path.display(),
            file.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    println!(
        "ok: {} trusted issuer(s); {} target(s) and {} rule(s) in {} mapping file(s)",
        config.trust.len(),
        mappings.target_count(),
        mappings.rule_count(),
        mappings.files().len()
    );
    if config.shared_state.is_none() {
        let single_use: Vec<&str> = config
            .trust
            .iter()
            .filter(|t| t.replay_reject)
            .map(|t| t.name.as_str())
            .collect();
        if !single_use.is_empty() {
            println!(
                "note: replay: reject ({}) without shared_state is single-replica only: each \
                 replica remembers its own used jtis, so N replicas accept a token up to N times",
                single_use.join(", ")
            );
        }
    }
    // Keys that come from files are read now (no network); with --online every issuer's are
    // fetched.
    let fetched: Vec<&crate::config::TrustConfig> = config
        .trust
        .iter()
        .filter(|t| online || matches!(t.jwks, crate::config::JwksSource::File(_)))
        .collect();
    if fetched.is_empty() {
        return ExitCode::SUCCESS;
    }
    let rt = match super::small_runtime("check") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let failed = rt.block_on(async {
        let manager = match crate::token::jwks::JwksManager::new(&config.trust, None) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: cannot set up the key fetcher: {e}");
                return fetched.len();
            }
        };
        let mut failed = 0;
        for trust in &fetched {
            match manager.refresh(&trust.name).await {
                Ok(keys) => println!(
                    "ok: issuer {}: {keys} key(s) ({})",
                    trust.name,
                    where_from(trust)
                ),
                Err(e) => {
                    failed += 1;
                    eprintln!("error: issuer {}: {}", trust.name, crate::exit::chain(&e));
                }
            }
        }
        failed
    });
    if failed == 0 {
        ExitCode::SUCCESS
    } else if online {
        // Reachability is not a config error: the same files may work from the service's network.
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::from(EXIT_CONFIG)
    }
}

/// Where an issuer's keys come from, for `check`'s report.
fn where_from(trust: &crate::config::TrustConfig) -> String {
    match &trust.jwks {
        crate::config::JwksSource::Discovery => format!("discovery at {}", trust.issuer),
        crate::config::JwksSource::Uri(u) => u.clone(),
        crate::config::JwksSource::File(p) => p.display().to_string(),
        crate::config::JwksSource::Inline(_) => "inline".into(),
    }
}

/// Why the audit file could not be opened for appending, if it could not: its directory missing,
/// or the file there but not writable.
fn audit_file_problem(file: &Path) -> Option<String> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Some(format!("the directory {} does not exist", dir.display()));
    }
    if file.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .err()
            .map(|e| format!("cannot append: {e}"));
    }
    None
}

/// `terraform-vars`: the JSON on stdout, anything left out on stderr; exit 64 when a target's
/// trust cannot be written as the cloud needs it.
pub(super) fn terraform_vars(path: &Path) -> ExitCode {
    let (config, mappings) = match or_config_errors(load_all(path)) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let vars = match crate::mapping::terraform::vars(&config.issuer.url, &mappings) {
        Ok(v) => v,
        Err(errors) => {
            return config_errors(&ConfigErrors(errors));
        }
    };
    for note in &vars.notes {
        eprintln!("note: {note}");
    }
    match serde_json::to_string_pretty(&vars) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write the variables: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// What `explain` found, line by line for a terminal and as one JSON object (`--output json`).
struct Explanation {
    json: bool,
    report: serde_json::Map<String, serde_json::Value>,
}

impl Explanation {
    /// Records `value` under `key` and prints `line` (text output).
    fn say(&mut self, line: impl AsRef<str>, key: &str, value: serde_json::Value) {
        if !self.json {
            println!("{}", line.as_ref());
        }
        self.report.insert(key.to_owned(), value);
    }

    /// Prints the JSON object (JSON output) and gives `code`.
    fn end(self, code: u8) -> ExitCode {
        if self.json {
            println!("{}", serde_json::Value::Object(self.report));
        }
        ExitCode::from(code)
    }
}

/// The trust list, mappings and stsbridge's own issuer URL `explain` and `test` work with:
/// `path`'s, or dev mode's built-in issuers over `./mappings` when no config is given.
fn offline_policy(
    path: Option<&Path>,
) -> Result<(Vec<config::TrustConfig>, Mappings, String, PathBuf), ExitCode> {
    offline_policy_at(path, &format!("http://{}", crate::dev::DEV_LISTEN))
}

/// As [`offline_policy`], for a dev server at `dev_base` when no config is given.
fn offline_policy_at(
    path: Option<&Path>,
    dev_base: &str,
) -> Result<(Vec<config::TrustConfig>, Mappings, String, PathBuf), ExitCode> {
    let loaded = match path {
        Some(path) => load_all(path).map(|(c, m)| (c.trust, m, c.issuer.url, c.mappings_dir)),
        None => {
            let dir = PathBuf::from("mappings");
            if !dir.is_dir() {
                eprintln!(
                    "error: no ./mappings here: run from the repository (dev mode's mappings), or pass --config FILE"
                );
                return Err(ExitCode::from(EXIT_CONFIG));
            }
            crate::dev::offline_at(&dir, dev_base).map(|(t, m)| (t, m, dev_base.to_owned(), dir))
        }
    };
    or_config_errors(loaded)
}

/// Why a token's claims failed, with what was expected beside what the token has.
fn expected_and_received(
    e: &token::TokenError,
    claims: &serde_json::Map<String, serde_json::Value>,
    trust: &config::TrustConfig,
) -> Option<(serde_json::Value, serde_json::Value)> {
    use serde_json::json;
    let now = crate::token::unix_seconds(SystemTime::now());
    match e {
        token::TokenError::AudienceMismatch | token::TokenError::MissingAudience => Some((
            json!(trust.audiences),
            claims.get("aud").cloned().unwrap_or_default(),
        )),
        token::TokenError::Expired => Some((
            json!(format!(
                "exp after now ({now}), with {}s leeway",
                trust.leeway.as_secs()
            )),
            claims.get("exp").cloned().unwrap_or_default(),
        )),
        token::TokenError::NotYetValid | token::TokenError::IssuedInFuture => Some((
            json!(format!(
                "nbf and iat at or before now ({now}), with {}s leeway",
                trust.leeway.as_secs()
            )),
            json!({ "nbf": claims.get("nbf"), "iat": claims.get("iat") }),
        )),
        token::TokenError::LifetimeTooLong => Some((
            json!(format!(
                "exp - iat at most {}s",
                trust.max_token_lifetime.as_secs()
            )),
            json!({ "iat": claims.get("iat"), "exp": claims.get("exp") }),
        )),
        _ => None,
    }
}

/// The dev server a token came from (`http://127.0.0.1:PORT` of an `iss` like
/// `http://127.0.0.1:PORT/dev/NAME`), when it came from one.
fn dev_base_of(raw: &str) -> Option<String> {
    let iss = token::parse(raw).ok()?.issuer;
    let (base, name) = iss.rsplit_once("/dev/")?;
    let host = base.strip_prefix("http://")?;
    let loopback = host
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
        || host.starts_with("localhost:");
    (loopback && !name.contains('/')).then(|| base.to_owned())
}

pub(super) fn explain(
    path: Option<&Path>,
    token_file: &Path,
    target: &str,
    json: bool,
) -> ExitCode {
    use serde_json::json;
    let raw = match std::fs::read_to_string(token_file) {
        Ok(t) => t.trim().to_owned(),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", token_file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Without a config: dev mode's issuers, at the address of the dev server the token is from.
    let dev_base =
        dev_base_of(&raw).unwrap_or_else(|| format!("http://{}", crate::dev::DEV_LISTEN));
    let (trust_list, mappings, own_url, _) = match offline_policy_at(path, &dev_base) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let mut out = Explanation {
        json,
        report: serde_json::Map::new(),
    };
    let parsed = match token::parse(&raw) {
        Ok(p) => p,
        Err(e) => {
            out.say(
                format!("token refused before any rule: {e} ({})", e.code()),
                "refused",
                json!({ "reason": e.code(), "message": e.to_string() }),
            );
            return out.end(EXIT_FAILURE);
        }
    };
    // stsbridge's own tokens come back under its built-in trust entry.
    let own = config::own_trust(&own_url, mappings.jwt_audiences());
    let Some(trust) = trust_list
        .iter()
        .chain(std::iter::once(&own))
        .find(|t| t.issuer == parsed.issuer)
    else {
        let trusted: Vec<&str> = trust_list.iter().map(|t| t.issuer.as_str()).collect();
        out.say(
            format!(
                "token refused before any rule: its issuer {:?} is not in trust (unknown_issuer)\n  expected one of: {trusted:?}\n  received:        {:?}",
                parsed.issuer, parsed.issuer
            ),
            "refused",
            json!({ "reason": "unknown_issuer", "expected": trusted, "received": parsed.issuer }),
        );
        return out.end(EXIT_FAILURE);
    };
    let (token, refusal) = token::inspect(parsed, trust, SystemTime::now());
    out.say(
        format!(
            "token: issuer {} ({}), subject {:?}",
            trust.name, token.issuer, token.subject
        ),
        "token",
        json!({ "trust_entry": trust.name, "issuer": token.issuer, "subject": token.subject }),
    );
    out.say(
        "signature: not checked (offline dry run)",
        "signature",
        json!("not checked"),
    );
    match &refusal {
        None => out.say(
            "claims: pass (exp, nbf, iat, lifetime, aud, sub)",
            "claims",
            json!({ "pass": true }),
        ),
        Some(e) => {
            let mut line = format!(
                "claims: FAIL: {e} ({}); the service would refuse this token with 401",
                e.code()
            );
            let mut value = json!({ "pass": false, "reason": e.code(), "message": e.to_string() });
            if let Some((expected, received)) = expected_and_received(e, &token.claims, trust) {
                line.push_str(&format!("\n  expected: {expected}\n  received: {received}"));
                value["expected"] = expected;
                value["received"] = received;
            }
            out.say(line, "claims", value);
        }
    }
    if mappings.target(target).is_none() {
        out.say(
            format!(
                "target {target:?} does not exist (known: {})",
                mappings.target_names().join(", ")
            ),
            "decision",
            json!({ "decision": "unknown_target", "known": mappings.target_names() }),
        );
        return out.end(EXIT_FAILURE);
    }
    let rules = mappings.explain(&token, target);
    if !json {
        if rules.is_empty() {
            println!(
                "\nno rule of issuer {} mentions target {target}",
                trust.name
            );
        }
        for r in &rules {
            print!("\n{}", r.report(&token.subject));
        }
        println!();
    }
    let rule_values: Vec<serde_json::Value> = rules
        .iter()
        .map(|r| {
            json!({
                "rule": r.rule,
                "file": r.file.display().to_string(),
                "matched": r.matched,
                "subject": { "test": r.subject_test, "pass": r.subject.pass, "received": token.subject },
                "conditions": r.conditions.iter().map(|c| json!({
                    "claim": c.claim,
                    "expected": c.test,
                    "received": c.check.actual,
                    "pass": c.check.pass,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    out.report.insert("rules".into(), json!(rule_values));
    let decision = mappings.decide(&token, target);
    match decision {
        Decision::Allow { rule, target } => {
            let prior_act = match prior_chain(&token.claims, trust.accept_act) {
                Ok(p) => p,
                Err(e) => {
                    out.say(
                        format!("decision: allow (rule {}), but the request would be refused (invalid_request): {e}", rule.name),
                        "decision",
                        json!({ "decision": "refused", "rule": rule.name, "reason": "invalid_request", "message": e.to_string() }),
                    );
                    return out.end(EXIT_FAILURE);
                }
            };
            let input = RenderInput {
                token: &token,
                raw_token: &raw,
                requested_scopes: None,
                actor: None,
                prior_act: &prior_act,
            };
            let rendered = render(target, &input);
            let mut line = format!("decision: allow (rule {})", rule.name);
            if let Some(label) = prior_act.audit_label() {
                line.push_str(&format!("\nthe token's own act claim: {label}"));
            }
            match &rendered {
                Ok(request) => line.push_str(&format!(
                    "\nrendered {} request:\n{request:#?}",
                    target.kind.provider()
                )),
                Err(e) => line.push_str(&format!("\nrendering fails: {e}")),
            }
            out.say(
                line,
                "decision",
                json!({
                    "decision": "allow",
                    "rule": rule.name,
                    "provider": target.kind.provider(),
                    "rendered": rendered.as_ref().map(|r| format!("{r:?}")).ok(),
                    "render_error": rendered.as_ref().err().map(ToString::to_string),
                }),
            );
        }
        Decision::Deny { rule: Some(rule) } => out.say(
            format!("decision: deny (deny rule {})", rule.name),
            "decision",
            json!({ "decision": "deny", "rule": rule.name }),
        ),
        Decision::Deny { rule: None } => out.say(
            "decision: deny (no allow rule matches)",
            "decision",
            json!({ "decision": "deny", "rule": null }),
        ),
        Decision::ActorNotAllowed { rule } => out.say(
            format!(
                "decision: deny (rule {} does not list the actor)",
                rule.name
            ),
            "decision",
            json!({ "decision": "actor_not_allowed", "rule": rule.name }),
        ),
        Decision::UnknownTarget => out.say(
            "decision: unknown target",
            "decision",
            json!({ "decision": "unknown_target" }),
        ),
    }
    out.end(if refusal.is_some() { EXIT_FAILURE } else { 0 })
}

pub(super) fn run_tests(config: Option<&Path>, paths: &[PathBuf]) -> ExitCode {
    let (trust, mappings, _, dir) = match offline_policy(config) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let paths = if paths.is_empty() {
        vec![dir.join("tests")]
    } else {
        paths.to_vec()
    };
    let files = match cases::test_files(&paths) {
        Ok(f) if f.is_empty() => {
            eprintln!("error: no test files in {}", paths[0].display());
            return ExitCode::from(EXIT_CONFIG);
        }
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, false);
    for file in &files {
        match cases::run_file(&mappings, &trust, file) {
            Err(errors) => {
                broken = true;
                for e in errors {
                    eprintln!("error: {e}");
                }
            }
            Ok(results) => {
                println!("{}: {} case(s)", file.display(), results.len());
                for r in results {
                    if r.passed() {
                        passed += 1;
                        println!("  ok    {}", r.name);
                        continue;
                    }
                    failed += 1;
                    println!("  FAIL  {}", r.name);
                    for f in &r.failures {
                        println!("        {f}");
                    }
                    for line in r.explanation.lines() {
                        println!("        {line}");
                    }
                }
            }
        }
    }
    println!(
        "\n{passed} passed, {failed} failed, in {} file(s)",
        files.len()
    );
    if broken {
        ExitCode::from(EXIT_CONFIG)
    } else if failed > 0 {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

pub(super) fn partner_init(name: &str, issuer: &str, audiences: &[String], dir: &Path) -> ExitCode {
    let files = match crate::partner::init(name, issuer, audiences, dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {}", crate::exit::chain(&e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for f in &files {
        println!("wrote {}", f.display());
    }
    println!(
        "\nnext: edit the rule's subject and claims to the partner's clients, run\n  stsbridge test\nand open a pull request. The rule starts in audit mode: it grants nothing until\nits mode is switched to enforce."
    );
    ExitCode::SUCCESS
}
