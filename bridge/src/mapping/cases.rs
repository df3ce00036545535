//! Mapping tests (`mappings/tests/*.yaml`, run by `stsbridge test`): each case is a token's
//! claims, a target and the expected decision, evaluated with the real engine and renderer, so a
//! change to a mapping is checked before it goes live.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};
use stsbridge_providers::{AssertionSource, ProviderRequest};

use super::delegation::{PriorAct, may_act_allows, prior_chain};
use super::{Decision, Mappings, RenderInput, render};
use crate::config::{ConfigError, TrustConfig, read_yaml};
use crate::token::ValidatedToken;

/// Format version of a test file.
pub const CASES_VERSION: u32 = 1;

impl Case {
    /// What the service would know of the caller's certificate: its DNS names, then its SPIFFE
    /// ID.
    fn certificate_names(&self) -> Vec<String> {
        let mut names = self.client_certificate.clone();
        names.extend(self.client_spiffe_id.clone());
        names
    }
}

/// A test file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// Must be 1.
    pub version: u32,
    /// The cases, in order.
    pub cases: Vec<Case>,
}

/// What a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// A credential is issued.
    Allow,
    /// The request is refused.
    Deny,
}

/// One case.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What it checks, in words.
    pub name: String,
    /// A trust entry's name.
    pub issuer: String,
    /// The token's claims; `sub` is required, `iss` defaults to the trust entry's issuer.
    pub claims: Map<String, Value>,
    /// The requested target.
    pub target: String,
    /// The expected decision.
    pub expect: Expect,
    /// The rule expected to decide (the allow rule, or the deny rule that refuses).
    pub rule: Option<String>,
    /// DNS names of the caller's client certificate (mTLS rules).
    #[serde(default)]
    pub client_certificate: Vec<String>,
    /// The SPIFFE ID of the caller's client certificate (`client_spiffe_id:` rules).
    pub client_spiffe_id: Option<String>,
    /// Expected AWS `RoleSessionName` of the rendered request.
    pub session_name: Option<String>,
    /// Expected AWS session tags (all of them).
    pub tags: Option<BTreeMap<String, String>>,
    /// Expected `sub` of the assertion stsbridge mints (or of the internal JWT).
    pub assertion_sub: Option<String>,
    /// Expected audit-mode rules that match (the staged rollout's would-be decisions).
    pub shadow: Option<Vec<String>>,
    /// An actor token presented with the subject (RFC 8693 delegation).
    pub actor: Option<ActorCase>,
}

/// The actor token of a case.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorCase {
    /// A trust entry's name.
    pub issuer: String,
    /// The actor token's claims; `sub` is required.
    pub claims: Map<String, Value>,
}

/// One case's outcome.
#[derive(Debug)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// What did not hold; empty when the case passed.
    pub failures: Vec<String>,
    /// Every rule of the issuer for the target with each test's outcome (for failures).
    pub explanation: String,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The test files named by `paths` (files, or directories whose `*.yaml` files are taken), sorted.
pub fn test_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            out.extend(super::mapping_files(path)?);
        } else if path.is_file() {
            out.push(path.clone());
        } else {
            return Err(ConfigError::new(path, ".", "no such file or directory"));
        }
    }
    Ok(out)
}

/// Runs every case of the test file `path`. A file that cannot be read or names an unknown
/// issuer or target is an error, not a failed case: the test itself is wrong.
pub fn run_file(
    mappings: &Mappings,
    trust: &[TrustConfig],
    path: &Path,
) -> Result<Vec<CaseResult>, Vec<ConfigError>> {
    let file: CaseFile = read_yaml(path).map_err(|e| e.0)?;
    let mut errors = Vec::new();
    if file.version != CASES_VERSION {
        errors.push(ConfigError::new(
            path,
            "version",
            format!(
                "{} is not a supported version; use {CASES_VERSION}",
                file.version
            ),
        ));
    }
    if file.cases.is_empty() {
        errors.push(ConfigError::new(path, "cases", "no cases"));
    }
    let mut results = Vec::new();
    for (i, case) in file.cases.iter().enumerate() {
        match run_case(mappings, trust, case) {
            Ok(r) => results.push(r),
            Err((field, message)) => {
                errors.push(ConfigError::new(
                    path,
                    format!("cases[{i}].{field}"),
                    message,
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(results)
    } else {
        Err(errors)
    }
}

/// A case's token from a trust entry's name and claims, with that entry; the error names the
/// field (`issuer` or `sub`).
fn case_token<'t>(
    trust: &'t [TrustConfig],
    issuer: &str,
    claims: &Map<String, Value>,
) -> Result<(ValidatedToken, &'t TrustConfig), (&'static str, String)> {
    let Some(entry) = trust.iter().find(|t| t.name == issuer) else {
        let mut known: Vec<&str> = trust.iter().map(|t| t.name.as_str()).collect();
        known.sort_unstable();
        return Err((
            "issuer",
            format!("{issuer:?} is not a trust entry (known: {known:?})"),
        ));
    };
    let Some(subject) = claims.get("sub").and_then(Value::as_str) else {
        return Err(("sub", "missing: every token has a string sub".into()));
    };
    let mut claims = claims.clone();
    claims
        .entry("iss")
        .or_insert_with(|| Value::String(entry.issuer.clone()));
    let token = ValidatedToken {
        trust: entry.name.clone(),
        issuer: entry.issuer.clone(),
        subject: subject.to_owned(),
        claims,
        jti: None,
        expires_at: u64::MAX / 2,
    };
    Ok((token, entry))
}

/// Runs one case.
pub fn run_case(
    mappings: &Mappings,
    trust: &[TrustConfig],
    case: &Case,
) -> Result<CaseResult, (&'static str, String)> {
    let (token, entry) = case_token(trust, &case.issuer, &case.claims).map_err(|(field, m)| {
        (
            if field == "issuer" {
                "issuer"
            } else {
                "claims.sub"
            },
            m,
        )
    })?;
    let actor = match &case.actor {
        None => None,
        Some(a) => Some(
            case_token(trust, &a.issuer, &a.claims)
                .map_err(|(field, m)| {
                    (
                        if field == "issuer" {
                            "actor.issuer"
                        } else {
                            "actor.claims.sub"
                        },
                        m,
                    )
                })?
                .0,
        ),
    };
    if let Some(builtin) = super::BUILTIN_TARGETS.iter().find(|b| **b == case.target) {
        return Ok(builtin_case(mappings, case, &token, builtin));
    }
    if mappings.target(&case.target).is_none() {
        return Err((
            "target",
            format!("there is no target named {:?}", case.target),
        ));
    }
    let mut failures = Vec::new();
    let prior_act = prior_chain(&token.claims, entry.accept_act).unwrap_or_else(|e| {
        failures.push(format!("the request is refused (invalid_request): {e}"));
        PriorAct::Absent
    });
    let names = &case.certificate_names();
    let decision = match &actor {
        Some(a) if !may_act_allows(&token.claims, a) => {
            match mappings.decide_for(&token, names, &case.target) {
                Decision::Allow { rule, .. } => Decision::ActorNotAllowed { rule },
                other => other,
            }
        }
        _ => mappings.decide_with_actor(&token, names, &case.target, actor.as_ref()),
    };
    match (decision, case.expect) {
        (Decision::Allow { rule, target }, Expect::Allow) => {
            if let Some(want) = &case.rule
                && *want != rule.name
            {
                failures.push(format!(
                    "expected rule {want} to allow, but rule {} did",
                    rule.name
                ));
            }
            let input = RenderInput {
                token: &token,
                raw_token: "a-test-token",
                requested_scopes: None,
                actor: actor.as_ref(),
                prior_act: &prior_act,
            };
            match render(target, &input) {
                Ok(request) => check_request(case, &request, &mut failures),
                Err(e) => {
                    failures.push(format!("allowed, but the request cannot be rendered: {e}"))
                }
            }
        }
        (Decision::Allow { rule, .. }, Expect::Deny) => {
            failures.push(format!("expected deny, but rule {} allows it", rule.name));
        }
        (Decision::Deny { rule }, Expect::Allow) => failures.push(match rule {
            Some(rule) => format!("expected allow, but deny rule {} refuses it", rule.name),
            None => "expected allow, but no allow rule matches".into(),
        }),
        (Decision::Deny { rule }, Expect::Deny) => {
            if let Some(want) = &case.rule
                && rule.is_none_or(|r| r.name != *want)
            {
                failures.push(format!(
                    "expected deny rule {want} to refuse it, but {}",
                    rule.map_or(
                        "no deny rule matched (no allow rule did either)".into(),
                        |r| { format!("rule {} did", r.name) }
                    )
                ));
            }
        }
        (Decision::ActorNotAllowed { rule }, Expect::Allow) => failures.push(format!(
            "expected allow, but the actor is not allowed: rule {} matches the subject and does not list it in actors: (or the subject's may_act does not name it)",
            rule.name
        )),
        (Decision::ActorNotAllowed { .. }, Expect::Deny) => {
            if let Some(want) = &case.rule {
                failures.push(format!(
                    "expected deny rule {want} to refuse it, but the actor was refused (actor_not_allowed)"
                ));
            }
        }
        (Decision::UnknownTarget, _) => unreachable!("the target was checked above"),
    }
    if let Some(want) = &case.shadow {
        let got: Vec<&str> = mappings
            .shadow_for(&token, names, &case.target)
            .into_iter()
            .map(|r| r.name.as_str())
            .collect();
        if got != want.iter().map(String::as_str).collect::<Vec<_>>() {
            failures.push(format!(
                "expected audit-mode rules {want:?} to match, got {got:?}"
            ));
        }
    }
    let mut explanation = String::new();
    if !failures.is_empty() {
        let rules = mappings.explain_for(&token, names, &case.target);
        if rules.is_empty() {
            let _ = writeln!(
                explanation,
                "no rule of issuer {} mentions target {}",
                entry.name, case.target
            );
        }
        for r in &rules {
            explanation.push_str(&r.report(&token.subject));
        }
    }
    Ok(CaseResult {
        name: case.name.clone(),
        failures,
        explanation,
    })
}

/// A case for a built-in target (`stsbridge:revoke`, `stsbridge:introspect`): only the decision
/// (and the deciding rule) is checked; there is no provider request.
fn builtin_case(
    mappings: &Mappings,
    case: &Case,
    token: &ValidatedToken,
    builtin: &str,
) -> CaseResult {
    let mut failures = Vec::new();
    match (mappings.permits(token, &case.certificate_names(), builtin), case.expect) {
        (Ok(rule), Expect::Allow) => {
            if let Some(want) = &case.rule
                && *want != rule.name
            {
                failures.push(format!("expected rule {want} to allow, but rule {} did", rule.name));
            }
        }
        (Ok(rule), Expect::Deny) => {
            failures.push(format!("expected deny, but rule {} allows it", rule.name));
        }
        (Err(rule), Expect::Allow) => failures.push(match rule {
            Some(rule) => format!("expected allow, but deny rule {} refuses it", rule.name),
            None => format!("expected allow, but no allow rule names {builtin} (\"*\" never grants a built-in target)"),
        }),
        (Err(rule), Expect::Deny) => {
            if let Some(want) = &case.rule
                && rule.is_none_or(|r| r.name != *want)
            {
                failures.push(format!("expected deny rule {want} to refuse it"));
            }
        }
    }
    CaseResult {
        name: case.name.clone(),
        failures,
        explanation: String::new(),
    }
}

fn check_request(case: &Case, request: &ProviderRequest, failures: &mut Vec<String>) {
    let provider = request.kind().as_str();
    let aws = match request {
        ProviderRequest::Aws(r) => Some(r),
        _ => None,
    };
    if let Some(want) = &case.session_name {
        match aws {
            Some(r) if r.session_name == *want => {}
            Some(r) => failures.push(format!(
                "session name: expected {want:?}, rendered {:?}",
                r.session_name
            )),
            None => failures.push(format!("session name: a {provider} target has none")),
        }
    }
    if let Some(want) = &case.tags {
        match aws {
            Some(r) => {
                let got: BTreeMap<String, String> = r.tags.iter().cloned().collect();
                if got != *want {
                    failures.push(format!("tags: expected {want:?}, rendered {got:?}"));
                }
            }
            None => failures.push(format!("tags: a {provider} target has none")),
        }
    }
    if let Some(want) = &case.assertion_sub {
        let got = match request {
            ProviderRequest::Aws(r) => assertion_subject(&r.assertion),
            ProviderRequest::Gcp(r) => assertion_subject(&r.assertion),
            ProviderRequest::Azure(r) => assertion_subject(&r.assertion),
            ProviderRequest::Jwt(r) => Some(r.subject.as_str()),
        };
        match got {
            Some(got) if got == want => {}
            Some(got) => failures.push(format!(
                "assertion sub: expected {want:?}, rendered {got:?}"
            )),
            None => failures
                .push("assertion sub: the target passes the caller's own token through".into()),
        }
    }
}

fn assertion_subject(source: &AssertionSource) -> Option<&str> {
    match source {
        AssertionSource::Mint { subject } => Some(subject),
        AssertionSource::Passthrough(_) => None,
    }
}
