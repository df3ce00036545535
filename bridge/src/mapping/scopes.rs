//! What each target shows a cloud, checked across all targets at load: internal tokens never
//! look like cloud assertions, and no two targets present one `sub` to the same cloud trust scope
//! while naming different cloud identities.
//!
//! A cloud trusts stsbridge's issuer and tells its targets apart by the assertion's `sub` (and
//! `aud`). If an internal JWT could carry a cloud's audience, or two targets could present the
//! same `sub` to one GCP pool for different service accounts, a caller allowed one target would
//! hold what the cloud accepts for the other.

use std::path::PathBuf;
use std::sync::Arc;

use stsbridge_providers::aws::AWS_AUDIENCE;
use stsbridge_providers::azure::AZURE_AUDIENCE;

use crate::config::ConfigError;

use super::sanitize::{Field, clean_chars};
use super::{ASSERTION_SUBJECT_PREFIX, AssertionMode, Target, TargetKind};

/// Google's limit on `sub`, the tightest of the clouds: a longer subject would be cut, and two
/// long names could become one subject.
pub const MAX_ASSERTION_SUBJECT_BYTES: usize = 127;

/// A target as loaded: where it was written, for errors.
pub struct Placed<'a> {
    /// Its file.
    pub file: &'a PathBuf,
    /// Its index in that file's `targets:`.
    pub index: usize,
    /// The target.
    pub target: &'a Arc<Target>,
}

/// Every problem of `targets` taken together.
pub fn check(targets: &[Placed<'_>]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let assertions: Vec<(&Placed<'_>, Assertion)> = targets
        .iter()
        .filter_map(|p| assertion(p, &mut errors).map(|a| (p, a)))
        .collect();
    for p in targets {
        if let TargetKind::Jwt(jwt) = &p.target.kind {
            check_jwt(
                p,
                &jwt.audience,
                jwt.subject.as_ref(),
                &assertions,
                &mut errors,
            );
        }
    }
    for (i, (p, a)) in assertions.iter().enumerate() {
        // Report each clash once, at the later target, naming the earlier one.
        if let Some((other, b)) = assertions[..i].iter().find(|(_, b)| {
            b.scope == a.scope && b.identity != a.identity && a.subject.overlaps(&b.subject)
        }) {
            errors.push(ConfigError::new(
                p.file,
                a.field(p.index),
                format!(
                    "{} presents the same sub {:?} to {} as target {} ({}), which names another identity ({} vs {}): a caller allowed one would hold what the cloud grants the other; give each its own assertion_subject",
                    p.target.name,
                    a.subject.shown(),
                    a.scope,
                    other.target.name,
                    other.file.display(),
                    a.identity,
                    b.identity,
                ),
            ));
        }
    }
    errors
}

/// The `sub` a target's assertions carry, as far as it is known at load.
#[derive(Debug)]
enum Subject {
    /// The same for every caller.
    Exact(String),
    /// Per caller, starting with this (the literal text before the first value read from the
    /// token).
    Prefix(String),
}

impl Subject {
    /// Whether some assertion of one could carry the same `sub` as some assertion of the other.
    fn overlaps(&self, other: &Subject) -> bool {
        match (self, other) {
            (Subject::Exact(a), Subject::Exact(b)) => a == b,
            (Subject::Exact(a), Subject::Prefix(p)) | (Subject::Prefix(p), Subject::Exact(a)) => {
                a.starts_with(p.as_str())
            }
            (Subject::Prefix(a), Subject::Prefix(b)) => {
                a.starts_with(b.as_str()) || b.starts_with(a.as_str())
            }
        }
    }

    fn shown(&self) -> String {
        match self {
            Subject::Exact(s) => s.clone(),
            Subject::Prefix(p) => format!("{p}*"),
        }
    }
}

/// One minted assertion's place in the cloud.
struct Assertion {
    /// The trust scope: an AWS role, a GCP pool, an Azure identity.
    scope: String,
    /// The identity obtained: the same as the scope for AWS roles and Azure identities; for GCP
    /// the impersonated service account, or the pool's federated principal itself.
    identity: String,
    subject: Subject,
    /// `aud`.
    audience: String,
    /// The target sets `assertion_subject` (else the default `target:<name>`).
    explicit_subject: bool,
}

impl Assertion {
    fn field(&self, index: usize) -> String {
        if self.explicit_subject {
            format!("targets[{index}].assertion_subject")
        } else {
            format!("targets[{index}].name")
        }
    }
}

/// The assertion a cloud target mints; `None` for JWT and passthrough targets. A subject that is
/// too long to reach the cloud uncut is an error.
fn assertion(p: &Placed<'_>, errors: &mut Vec<ConfigError>) -> Option<Assertion> {
    let AssertionMode::Mint(template) = &p.target.assertion else {
        return None;
    };
    let (scope, identity, audience) = match &p.target.kind {
        TargetKind::Jwt(_) => return None,
        TargetKind::Aws(aws) => (
            format!("AWS role {}", aws.role_arn),
            aws.role_arn.to_string(),
            AWS_AUDIENCE.to_owned(),
        ),
        TargetKind::Gcp(gcp) => {
            let pool = gcp
                .audience
                .split_once("/providers/")
                .map_or(gcp.audience.as_str(), |(pool, _)| pool);
            (
                format!("GCP pool {pool}"),
                gcp.service_account
                    .clone()
                    .unwrap_or_else(|| format!("the federated principal of {pool}")),
                gcp.assertion_audience.clone(),
            )
        }
        TargetKind::Azure(azure) => {
            let identity = format!(
                "Azure application {} in tenant {}",
                azure.client_id, azure.tenant_id
            );
            (identity.clone(), identity, AZURE_AUDIENCE.to_owned())
        }
    };
    let explicit_subject =
        template.source() != format!("{ASSERTION_SUBJECT_PREFIX}{}", p.target.name);
    let (prefix, complete) = template.prefix_for(&p.target.name);
    let prefix = clean_chars(Field::AssertionSubject, &prefix);
    let subject = if complete {
        if prefix.len() > MAX_ASSERTION_SUBJECT_BYTES {
            errors.push(ConfigError::new(
                p.file,
                if explicit_subject {
                    format!("targets[{}].assertion_subject", p.index)
                } else {
                    format!("targets[{}].name", p.index)
                },
                format!(
                    "the assertion subject {prefix:?} is {} bytes, over the {MAX_ASSERTION_SUBJECT_BYTES} bytes a cloud accepts; it would be cut and could equal another target's: shorten the {}",
                    prefix.len(),
                    if explicit_subject { "assertion_subject" } else { "target name" }
                ),
            ));
            return None;
        }
        Subject::Exact(prefix)
    } else {
        Subject::Prefix(prefix.chars().take(MAX_ASSERTION_SUBJECT_BYTES).collect())
    };
    Some(Assertion {
        scope,
        identity,
        subject,
        audience,
        explicit_subject,
    })
}

/// Whether `audience` is one a cloud accepts assertions for, whatever any target says.
fn is_cloud_audience(audience: &str) -> bool {
    audience == AWS_AUDIENCE
        || audience == AZURE_AUDIENCE
        || audience.starts_with("//iam.googleapis.com/")
        || audience.starts_with("https://iam.googleapis.com/")
}

fn check_jwt(
    p: &Placed<'_>,
    audience: &str,
    subject: Option<&super::Template>,
    assertions: &[(&Placed<'_>, Assertion)],
    errors: &mut Vec<ConfigError>,
) {
    let cloud_target = assertions
        .iter()
        .find(|(_, a)| a.audience == audience)
        .map(|(q, _)| &*q.target.name);
    if is_cloud_audience(audience) || cloud_target.is_some() {
        let whose = cloud_target.map_or_else(
            || "a cloud's".to_owned(),
            |t| format!("the assertion audience of cloud target {t}"),
        );
        errors.push(ConfigError::new(
            p.file,
            format!("targets[{}].jwt.audience", p.index),
            format!(
                "{audience:?} is {whose}: an internal token for it would be accepted where stsbridge's cloud assertions are; use the audience of your own service"
            ),
        ));
    }
    if let Some(t) = subject {
        let (prefix, _) = t.prefix_for(&p.target.name);
        let reserved = ASSERTION_SUBJECT_PREFIX;
        if prefix.starts_with(reserved) {
            errors.push(ConfigError::new(
                p.file,
                format!("targets[{}].jwt.subject", p.index),
                format!(
                    "{:?} starts with {reserved}, which only the subjects of stsbridge's cloud assertions use",
                    t.source()
                ),
            ));
        }
    }
}
