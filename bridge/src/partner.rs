//! `stsbridge partner init`: the starting files of a partner onboarded by configuration.
//!
//! A partner file holds the partner's trust entry, its targets and its rules, so onboarding (or
//! offboarding) a partner is one file in a pull request, picked up by hot reload. Its tests sit in
//! `tests/` beside it and run with `stsbridge test`. The rule starts in audit mode: it is
//! evaluated and recorded, and grants nothing until switched to `mode: enforce`.

use std::path::{Path, PathBuf};

use crate::config::{check_url, valid_name};

/// Why the files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// A file is already there.
    #[error("{0} already exists; a partner is onboarded once (edit that file instead)")]
    Exists(PathBuf),
    /// The written files do not load with the rest of the mappings; they were removed.
    #[error(
        "the new files do not load with the mappings in {dir}, so they were not kept:\n{errors}"
    )]
    DoesNotLoad {
        /// The mappings directory.
        dir: PathBuf,
        /// The loader's messages.
        errors: String,
    },
    /// Writing failed.
    #[error("cannot write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
}

/// The names `init` derives from a partner name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerNames {
    /// Trust entry (and file stem): `partner-NAME`.
    pub trust: String,
    /// The starting target.
    pub target: String,
    /// The starting rule.
    pub rule: String,
}

impl PartnerNames {
    /// Names for `name` (a leading `partner-` is not doubled).
    pub fn new(name: &str) -> Result<Self, InitError> {
        let bare = name.strip_prefix("partner-").unwrap_or(name);
        if bare.is_empty() || !valid_name(bare) || bare.len() > 64 {
            return Err(InitError::Invalid(format!(
                "--name {name:?}: use up to 64 letters, digits, '-', '_' or '.'"
            )));
        }
        let trust = format!("partner-{bare}");
        Ok(PartnerNames {
            target: format!("{trust}-api"),
            rule: format!("{trust}-clients"),
            trust,
        })
    }
}

/// Writes `DIR/partner-NAME.yaml` and `DIR/tests/partner-NAME.yaml`, then loads the whole
/// directory to prove they fit; on any problem nothing is left behind.
pub fn init(
    name: &str,
    issuer: &str,
    audiences: &[String],
    dir: &Path,
) -> Result<Vec<PathBuf>, InitError> {
    let names = PartnerNames::new(name)?;
    check_url(issuer, true).map_err(|m| InitError::Invalid(format!("--issuer: {m}")))?;
    if audiences.is_empty() {
        return Err(InitError::Invalid("give at least one --audience".into()));
    }
    for a in audiences {
        if a.is_empty() || a.len() > 512 || a.chars().any(char::is_control) {
            return Err(InitError::Invalid(format!(
                "--audience {a:?} is not usable"
            )));
        }
    }
    if !dir.is_dir() {
        return Err(InitError::Invalid(format!(
            "{} is not a directory (pass the mappings directory with --dir)",
            dir.display()
        )));
    }
    let file = dir.join(format!("{}.yaml", names.trust));
    let tests = dir.join("tests").join(format!("{}.yaml", names.trust));
    for path in [&file, &tests] {
        if path.exists() {
            return Err(InitError::Exists(path.clone()));
        }
    }
    let write = |path: &Path, text: String| -> Result<(), InitError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| InitError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(path, text).map_err(|source| InitError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let remove = || {
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&tests);
    };
    let loopback = issuer.starts_with("http://");
    let written = write(&file, partner_file(&names, issuer, audiences, loopback))
        .and_then(|()| write(&tests, tests_file(&names)));
    if let Err(e) = written {
        remove();
        return Err(e);
    }
    if let Err(errors) = check(dir, &tests) {
        remove();
        return Err(InitError::DoesNotLoad {
            dir: dir.to_path_buf(),
            errors,
        });
    }
    Ok(vec![file, tests])
}

/// Loads `dir` as `stsbridge test` would without a config and runs the new tests.
fn check(dir: &Path, tests: &Path) -> Result<(), String> {
    let (trust, mappings) = crate::dev::offline(dir).map_err(|e| e.to_string())?;
    let results = crate::mapping::cases::run_file(&mappings, &trust, tests).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    match results.iter().find(|r| !r.passed()) {
        Some(r) => Err(format!("{}: {}", r.name, r.failures.join("; "))),
        None => Ok(()),
    }
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn partner_file(
    names: &PartnerNames,
    issuer: &str,
    audiences: &[String],
    loopback: bool,
) -> String {
    let audiences: Vec<String> = audiences.iter().map(|a| quoted(a)).collect();
    let PartnerNames {
        trust,
        target,
        rule,
    } = names;
    format!(
        r#"# Partner {trust}: its trust entry, what it may obtain, and who among its clients may.
# Written by `stsbridge partner init`; reviewed and merged like any code change. Removing this
# file offboards the partner (hot reload picks up either).
version: 1
trust:
  - name: {trust}
    issuer: {issuer}
    audiences: [{audiences}]
    jwks: {{ discovery: true }}       # or {{ uri: https://... }}; fetched on the first token
    algorithms: [RS256, ES256]
    max_token_lifetime: 1h
    explain_denials: true           # a refused client is told which conditions failed
    rate_limit: 20/s                # all of this partner's clients together
    burst: 40
    max_concurrent: 16{loopback}
targets:
  - name: {target}
    description: Our API, as this partner's clients see it.
    jwt:
      audience: partner-api
      scopes: [read]
      lifetime: 5m
      subject: "partner:{{{{ issuer }}}}:{{{{ subject }}}}"
rules:
  - name: {rule}
    description: The partner's integration clients. Narrow subject and claims to what the
      partner told us, run `stsbridge test`, then switch mode to enforce.
    issuer: {trust}
    subject: {{ any: true }}
    allow: [{target}]
    mode: audit                     # staged rollout: recorded as would-allow, grants nothing
"#,
        issuer = quoted(issuer),
        audiences = audiences.join(", "),
        loopback = if loopback {
            "\n    allow_insecure_loopback: true   # a local stand-in IdP over plain http; never in production"
        } else {
            ""
        },
    )
}

fn tests_file(names: &PartnerNames) -> String {
    let PartnerNames {
        trust,
        target,
        rule,
    } = names;
    format!(
        r#"# Tests of {trust}.yaml, run by `stsbridge test`. When the rule is switched to enforce,
# switch the first case to expect: allow (and drop its shadow line).
version: 1
cases:
  - name: while in audit mode a client of {trust} is recorded as would-allow and granted nothing
    issuer: {trust}
    claims: {{ sub: client-1 }}
    target: {target}
    expect: deny
    shadow: [{rule}]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_once_and_checked() {
        assert_eq!(PartnerNames::new("globex").unwrap().trust, "partner-globex");
        assert_eq!(
            PartnerNames::new("partner-globex").unwrap().target,
            "partner-globex-api"
        );
        for bad in ["", "partner-", "a b", "x/../y", "é"] {
            assert!(PartnerNames::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn init_writes_files_that_load_and_pass_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let files = init(
            "initech",
            "https://idp.initech.example",
            &["https://sts.example.com".into()],
            dir.path(),
        )
        .unwrap();
        assert_eq!(files.len(), 2);
        let (trust, mappings) = crate::dev::offline(dir.path()).unwrap();
        let entry = trust.iter().find(|t| t.name == "partner-initech").unwrap();
        assert!(entry.lazy_jwks && entry.explain_denials);
        assert_eq!(entry.max_concurrent, Some(16));
        assert_eq!(mappings.rule_count(), 1);
        let again = init(
            "initech",
            "https://idp.initech.example",
            &["a".into()],
            dir.path(),
        );
        assert!(matches!(again, Err(InitError::Exists(_))), "{again:?}");
    }

    #[test]
    fn hostile_arguments_are_refused_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let aud = ["x".to_owned()];
        // Plain http only to loopback (a local stand-in), and then the file says so.
        assert!(init("a", "http://idp.example", &aud, dir.path()).is_err());
        init("local", "http://127.0.0.1:8081", &aud, dir.path()).unwrap();
        let (trust, _) = crate::dev::offline(dir.path()).unwrap();
        let local = trust.iter().find(|t| t.name == "partner-local").unwrap();
        assert!(local.allow_insecure_loopback);
        assert!(init("a", "https://idp.example", &[], dir.path()).is_err());
        assert!(init("a", "https://idp.example", &["a\nb: c".into()], dir.path()).is_err());
        // A quote in the issuer cannot break out of the YAML scalar; the URL parser refuses it
        // or it stays one string.
        let r = init("b", "https://idp.example/\"x: y", &aud, dir.path());
        if r.is_ok() {
            let (trust, _) = crate::dev::offline(dir.path()).unwrap();
            assert!(
                trust
                    .iter()
                    .any(|t| t.issuer.contains("\"x: y") || t.issuer.contains("%22"))
            );
        }
        // Same issuer as an existing partner: does not load, so nothing is kept.
        init("c", "https://idp.c.example", &aud, dir.path()).unwrap();
        let dup = init("d", "https://idp.c.example", &aud, dir.path());
        assert!(matches!(dup, Err(InitError::DoesNotLoad { .. })), "{dup:?}");
        assert!(!dir.path().join("partner-d.yaml").exists());
        assert!(!dir.path().join("tests/partner-d.yaml").exists());
    }
}
