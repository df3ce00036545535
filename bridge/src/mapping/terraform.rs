//! `stsbridge terraform-vars`: what each cloud must trust, derived from the loaded mappings, as the
//! `.tfvars.json` that the modules under `terraform/` take. Trust conditions and mappings then come
//! from one source: the `sub` and `aud` here are computed by the same templates and sanitizers
//! that shape the assertions stsbridge mints.
//!
//! Per cloud:
//! - AWS: one entry per IAM role (keyed by ARN), with the web identity trust of a first hop (exact
//!   subjects, or `StringLike` patterns for subjects rendered per caller), the roles a chained hop
//!   trusts (with its external id), and the roles it must be allowed to assume next.
//! - GCP: one entry per workload identity pool provider (allowed audiences, subjects), and one
//!   binding per target (the `principal://` member and the service account it impersonates).
//! - Azure: one federated identity credential per identity and subject.
//!
//! JWT targets need no cloud trust; passthrough targets show the caller's own token, so the cloud
//! trusts the caller's IdP, which these modules do not manage: both are left out, and
//! [`TerraformVars::notes`] says so for passthrough targets.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use stsbridge_providers::aws::AWS_AUDIENCE;
use stsbridge_providers::azure::AZURE_AUDIENCE;

use super::sanitize::{Field, clean_chars, sanitize};
use super::template::Template;
use super::{AssertionMode, Mappings, Target, TargetKind};
use crate::config::ConfigError;

/// Entra ID holds at most 20 federated identity credentials per identity.
pub const AZURE_MAX_CREDENTIALS: usize = 20;
/// A workload identity pool provider accepts at most 10 allowed audiences.
pub const GCP_MAX_AUDIENCES: usize = 10;

/// The whole `.tfvars.json`. Maps are sorted, so the output is stable and diffs well.
#[derive(Debug, Default, Serialize)]
pub struct TerraformVars {
    /// stsbridge's issuer URL (`iss` of every assertion).
    pub issuer_url: String,
    /// Per target: the cloud, the exact `sub` (or `sub_pattern`) and `aud` of its assertions,
    /// and the identity it obtains. For review, and the consistency checks.
    pub targets: BTreeMap<String, TargetTrust>,
    /// IAM roles, keyed by ARN.
    pub aws_roles: BTreeMap<String, AwsRole>,
    /// Workload identity pool providers, keyed by resource name
    /// (`projects/N/locations/global/workloadIdentityPools/P/providers/V`).
    pub gcp_providers: BTreeMap<String, GcpProvider>,
    /// Per GCP target: who is bound to what.
    pub gcp_bindings: BTreeMap<String, GcpBinding>,
    /// Federated identity credentials, keyed by credential name.
    pub azure_credentials: BTreeMap<String, AzureCredential>,
    /// What was left out and why (printed on stderr, not part of the JSON).
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// One target's assertion, as the cloud sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetTrust {
    /// `aws`, `gcp` or `azure`.
    pub provider: &'static str,
    /// The exact `sub`, when every caller gets the same one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The `StringLike` pattern of `sub` (`*` for each value read from the caller's token), when
    /// the target's `assertion_subject` is rendered per caller (AWS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_pattern: Option<String>,
    /// The `aud`.
    pub aud: String,
    /// The role ARN, the pool provider (and service account), or the client id.
    pub identity: String,
}

/// An IAM role stsbridge's sessions reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AwsRole {
    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub partition: String,
    /// The account that holds it.
    pub account_id: String,
    /// Role name.
    pub name: String,
    /// Role path (`/` or `/a/b/`).
    pub path: String,
    /// The targets that reach it.
    pub targets: Vec<String>,
    /// Present when it is a first hop: stsbridge's assertion is presented to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_identity: Option<WebIdentityTrust>,
    /// Roles that assume it in a chain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_roles: Vec<RoleTrust>,
    /// Roles it assumes next in a chain (its permissions must allow that).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assumes: Vec<NextRole>,
    /// The longest session asked of it, in seconds (the role's `MaxSessionDuration` must allow it).
    pub max_session_duration: u64,
}

/// The trust a first-hop role gives stsbridge's issuer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct WebIdentityTrust {
    /// `aud` (always `sts.amazonaws.com`).
    pub audience: String,
    /// Exact subjects (`StringEquals`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// Subject patterns (`StringLike`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_patterns: Vec<String>,
    /// Some target sets session tags: the trust must allow `sts:TagSession`.
    pub tag_session: bool,
    /// Some target sets a source identity: the trust must allow `sts:SetSourceIdentity`.
    pub set_source_identity: bool,
}

/// A role that assumes this one in a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleTrust {
    /// The previous hop's role.
    pub role_arn: String,
    /// `sts:ExternalId` it must present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The `StringLike` pattern of an external id rendered per caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id_pattern: Option<String>,
    /// The hop passes session tags, or transitive tags arrive with it.
    pub tag_session: bool,
    /// The hop carries a source identity.
    pub set_source_identity: bool,
}

/// A role this one assumes next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextRole {
    /// The next hop's role.
    pub role_arn: String,
    /// The call passes session tags.
    pub tag_session: bool,
    /// The call passes a source identity.
    pub set_source_identity: bool,
}

/// A workload identity pool provider trusting stsbridge's issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcpProvider {
    /// Project number.
    pub project_number: String,
    /// Pool id.
    pub pool_id: String,
    /// Provider id.
    pub provider_id: String,
    /// `aud` values of the assertions presented to it.
    pub allowed_audiences: Vec<String>,
    /// `sub` values of those assertions (for the attribute condition).
    pub subjects: Vec<String>,
    /// The targets whose assertions it accepts.
    pub targets: Vec<String>,
}

/// What one GCP target's principal is granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcpBinding {
    /// Key of its provider in `gcp_providers`.
    pub provider: String,
    /// The assertion's `sub`.
    pub subject: String,
    /// The IAM member: `principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/subject/SUB`.
    pub principal: String,
    /// The service account it impersonates (none: grant resources to `principal` directly).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Delegation chain, in order, ending before `service_account`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delegates: Vec<String>,
}

/// One federated identity credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureCredential {
    /// Tenant.
    pub tenant_id: String,
    /// Application (client) id of the app registration or user-assigned identity.
    pub client_id: String,
    /// The assertion's `sub`.
    pub subject: String,
    /// `api://AzureADTokenExchange`.
    pub audience: String,
    /// The targets that present this subject to this identity.
    pub targets: Vec<String>,
}

/// Derives the variables from loaded mappings; every problem (a trust condition that cannot be
/// written exactly) is returned, naming the target's file.
pub fn vars(issuer_url: &str, mappings: &Mappings) -> Result<TerraformVars, Vec<ConfigError>> {
    let mut out = TerraformVars {
        issuer_url: issuer_url.to_owned(),
        ..TerraformVars::default()
    };
    let mut errors = Vec::new();
    let mut targets: Vec<&Target> = mappings.targets.values().map(AsRef::as_ref).collect();
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    for target in targets {
        let subject = match &target.assertion {
            // (JWT targets cannot be passthrough: the mapping load refuses that.)
            AssertionMode::Passthrough => {
                out.notes.push(format!(
                    "target {} uses assertion: passthrough: {} sees the caller's own token and \
                     must trust the caller's IdP; terraform/ does not manage that trust",
                    target.name,
                    target.kind.provider()
                ));
                continue;
            }
            AssertionMode::Mint(t) => Subject::of(t, &target.name),
        };
        let result = match &target.kind {
            TargetKind::Jwt(_) => continue,
            TargetKind::Aws(aws) => {
                aws_target(&mut out, target, aws, &subject);
                Ok(())
            }
            TargetKind::Gcp(gcp) => gcp_target(&mut out, target, gcp, &subject),
            TargetKind::Azure(azure) => azure_target(&mut out, target, azure, &subject),
        };
        if let Err(message) = result {
            errors.push(ConfigError::new(
                &target.file,
                format!("target {}", target.name),
                message,
            ));
        }
    }
    for role in out.aws_roles.values_mut() {
        role.targets.sort();
        role.targets.dedup();
        if let Some(w) = &mut role.web_identity {
            w.subjects.sort();
            w.subjects.dedup();
            w.subject_patterns.sort();
            w.subject_patterns.dedup();
        }
    }
    for p in out.gcp_providers.values_mut() {
        p.allowed_audiences.sort();
        p.allowed_audiences.dedup();
        p.subjects.sort();
        p.subjects.dedup();
        p.targets.sort();
    }
    let file_of = |target: &str| {
        mappings
            .target(target)
            .map(|t| t.file.clone())
            .unwrap_or_default()
    };
    for (key, p) in &out.gcp_providers {
        if p.allowed_audiences.len() > GCP_MAX_AUDIENCES {
            errors.push(ConfigError::new(
                &file_of(&p.targets[0]),
                format!("target {}: gcp.audience {key}", p.targets[0]),
                format!(
                    "{} distinct assertion audiences; a pool provider accepts at most {GCP_MAX_AUDIENCES}",
                    p.allowed_audiences.len()
                ),
            ));
        }
    }
    let mut per_identity: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in out.azure_credentials.values() {
        per_identity
            .entry(&c.client_id)
            .or_default()
            .push(&c.targets[0]);
    }
    for (client_id, names) in per_identity {
        if names.len() > AZURE_MAX_CREDENTIALS {
            errors.push(ConfigError::new(
                &file_of(names[0]),
                format!("target {}: azure.client_id {client_id}", names[0]),
                format!(
                    "{} federated credentials ({}); Entra ID holds at most {AZURE_MAX_CREDENTIALS} \
                     per identity: give some targets their own identity",
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A minted assertion's `sub` for one target: exact, or a pattern when rendered per caller.
enum Subject {
    Exact(String),
    Pattern(String),
}

impl Subject {
    fn of(template: &Template, target: &str) -> Subject {
        match template.constant_for(target) {
            Some(s) => Subject::Exact(sanitize(Field::AssertionSubject, &s)),
            None => Subject::Pattern(wildcard(template, target, Field::AssertionSubject)),
        }
    }

    fn exact(&self, cloud: &str) -> Result<&str, String> {
        match self {
            Subject::Exact(s) => Ok(s),
            Subject::Pattern(p) => Err(format!(
                "its assertion_subject is rendered per caller ({p}), but {cloud} matches one \
                 exact subject: make assertion_subject fixed for the target (the default, \
                 target:<name>, is), and let the rules decide who may obtain it"
            )),
        }
    }

    fn trust(&self, provider: &'static str, aud: &str, identity: String) -> TargetTrust {
        let (sub, sub_pattern) = match self {
            Subject::Exact(s) => (Some(s.clone()), None),
            Subject::Pattern(p) => (None, Some(p.clone())),
        };
        TargetTrust {
            provider,
            sub,
            sub_pattern,
            aud: aud.to_owned(),
            identity,
        }
    }
}

/// The `StringLike` pattern of a template rendered per caller: literal parts cleaned as the field
/// cleans them, each value read from the token a `*`. Two edges: a literal `*` in the template
/// matches anything too (looser than the template), and a subject cut to its 127 bytes can lose
/// the pattern's closing literal and then not match (refused; keep per-caller subjects short, or
/// end them with the value read from the token).
fn wildcard(template: &Template, target: &str, field: Field) -> String {
    template
        .wildcard_for(target)
        .split('*')
        .map(|literal| clean_chars(field, literal))
        .collect::<Vec<_>>()
        .join("*")
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`, checked at load time.
fn split_role_arn(arn: &str) -> (String, String, String, String) {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let partition = parts.get(1).copied().unwrap_or("aws").to_owned();
    let account = parts.get(4).copied().unwrap_or_default().to_owned();
    let resource = parts.get(5).copied().unwrap_or_default();
    let full = resource.strip_prefix("role").unwrap_or(resource);
    let (path, name) = match full.rfind('/') {
        Some(i) => (&full[..=i], &full[i + 1..]),
        None => ("/", full),
    };
    (partition, account, path.to_owned(), name.to_owned())
}

fn role<'a>(out: &'a mut TerraformVars, arn: &str) -> &'a mut AwsRole {
    out.aws_roles.entry(arn.to_owned()).or_insert_with(|| {
        let (partition, account_id, path, name) = split_role_arn(arn);
        AwsRole {
            partition,
            account_id,
            name,
            path,
            targets: Vec::new(),
            web_identity: None,
            trusted_roles: Vec::new(),
            assumes: Vec::new(),
            max_session_duration: 0,
        }
    })
}

fn seconds(d: Duration) -> u64 {
    // AWS's own default; a role never has less.
    d.as_secs().max(3600)
}

fn aws_target(out: &mut TerraformVars, target: &Target, aws: &super::AwsTarget, sub: &Subject) {
    out.targets.insert(
        target.name.to_string(),
        sub.trust("aws", AWS_AUDIENCE, aws.role_arn.to_string()),
    );
    let tags_first = !aws.tags.is_empty() || !aws.transitive_tag_keys.is_empty();
    let first = role(out, &aws.role_arn);
    first.targets.push(target.name.to_string());
    first.max_session_duration = first.max_session_duration.max(seconds(aws.duration));
    let w = first.web_identity.get_or_insert_with(|| WebIdentityTrust {
        audience: AWS_AUDIENCE.to_owned(),
        ..WebIdentityTrust::default()
    });
    match sub {
        Subject::Exact(s) => w.subjects.push(s.clone()),
        Subject::Pattern(p) => w.subject_patterns.push(p.clone()),
    }
    w.tag_session |= tags_first;
    w.set_source_identity |= aws.source_identity.is_some();

    // Along the chain: transitive tags and the source identity stay with the session, so every
    // later hop must allow them too.
    let mut previous = aws.role_arn.clone();
    let mut transitive = !aws.transitive_tag_keys.is_empty();
    let mut source_identity = aws.source_identity.is_some();
    for hop in &aws.chain {
        let tag_session = transitive || !hop.tags.is_empty() || !hop.transitive_tag_keys.is_empty();
        source_identity |= hop.source_identity.is_some();
        let (external_id, external_id_pattern) = match &hop.external_id {
            None => (None, None),
            Some(t) => match t.constant_for(&target.name) {
                Some(s) => (Some(sanitize(Field::AwsExternalId, &s)), None),
                None => (None, Some(wildcard(t, &target.name, Field::AwsExternalId))),
            },
        };
        let next = NextRole {
            role_arn: hop.role_arn.to_string(),
            tag_session,
            set_source_identity: source_identity,
        };
        merge_next(&mut role(out, &previous).assumes, next);
        let this = role(out, &hop.role_arn);
        this.targets.push(target.name.to_string());
        this.max_session_duration = this.max_session_duration.max(seconds(hop.duration));
        merge_trust(
            &mut this.trusted_roles,
            RoleTrust {
                role_arn: previous.to_string(),
                external_id,
                external_id_pattern,
                tag_session,
                set_source_identity: source_identity,
            },
        );
        transitive |= !hop.transitive_tag_keys.is_empty();
        previous = hop.role_arn.clone();
    }
}

/// Adds `next`, or widens the entry for the same role.
fn merge_next(list: &mut Vec<NextRole>, next: NextRole) {
    match list.iter_mut().find(|n| n.role_arn == next.role_arn) {
        Some(n) => {
            n.tag_session |= next.tag_session;
            n.set_source_identity |= next.set_source_identity;
        }
        None => {
            list.push(next);
            list.sort_by(|a, b| a.role_arn.cmp(&b.role_arn));
        }
    }
}

/// Adds `trust`, or widens the entry for the same role and external id.
fn merge_trust(list: &mut Vec<RoleTrust>, trust: RoleTrust) {
    let same = |t: &&mut RoleTrust| {
        t.role_arn == trust.role_arn
            && t.external_id == trust.external_id
            && t.external_id_pattern == trust.external_id_pattern
    };
    match list.iter_mut().find(same) {
        Some(t) => {
            t.tag_session |= trust.tag_session;
            t.set_source_identity |= trust.set_source_identity;
        }
        None => {
            list.push(trust);
            list.sort_by(|a, b| {
                (&a.role_arn, &a.external_id, &a.external_id_pattern).cmp(&(
                    &b.role_arn,
                    &b.external_id,
                    &b.external_id_pattern,
                ))
            });
        }
    }
}

fn gcp_target(
    out: &mut TerraformVars,
    target: &Target,
    gcp: &super::GcpTarget,
    sub: &Subject,
) -> Result<(), String> {
    let subject = sub.exact("a GCP principal:// member")?.to_owned();
    // `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/V`,
    // checked at load time.
    let key = gcp
        .audience
        .strip_prefix("//iam.googleapis.com/")
        .unwrap_or(&gcp.audience)
        .to_owned();
    let parts: Vec<&str> = key.split('/').collect();
    let (project_number, pool_id, provider_id) = match parts.as_slice() {
        [
            "projects",
            n,
            "locations",
            "global",
            "workloadIdentityPools",
            p,
            "providers",
            v,
        ] => ((*n).to_owned(), (*p).to_owned(), (*v).to_owned()),
        _ => return Err(format!("{:?} is not a pool provider", gcp.audience)),
    };
    let principal = format!(
        "principal://iam.googleapis.com/projects/{project_number}/locations/global/workloadIdentityPools/{pool_id}/subject/{subject}"
    );
    let provider = out
        .gcp_providers
        .entry(key.clone())
        .or_insert_with(|| GcpProvider {
            project_number,
            pool_id,
            provider_id,
            allowed_audiences: Vec::new(),
            subjects: Vec::new(),
            targets: Vec::new(),
        });
    provider
        .allowed_audiences
        .push(gcp.assertion_audience.clone());
    provider.subjects.push(subject.clone());
    provider.targets.push(target.name.to_string());
    let identity = match &gcp.service_account {
        Some(sa) => sa.clone(),
        None => principal.clone(),
    };
    out.targets.insert(
        target.name.to_string(),
        sub.trust("gcp", &gcp.assertion_audience, identity),
    );
    out.gcp_bindings.insert(
        target.name.to_string(),
        GcpBinding {
            provider: key,
            subject,
            principal,
            service_account: gcp.service_account.clone(),
            delegates: gcp.delegates.clone(),
        },
    );
    Ok(())
}

fn azure_target(
    out: &mut TerraformVars,
    target: &Target,
    azure: &super::AzureTarget,
    sub: &Subject,
) -> Result<(), String> {
    let subject = sub
        .exact("an Azure federated identity credential")?
        .to_owned();
    out.targets.insert(
        target.name.to_string(),
        sub.trust("azure", AZURE_AUDIENCE, azure.client_id.clone()),
    );
    // One credential per identity and subject: Entra ID refuses two with the same issuer and
    // subject on one identity.
    if let Some(c) = out
        .azure_credentials
        .values_mut()
        .find(|c| c.client_id == azure.client_id && c.subject == subject)
    {
        c.targets.push(target.name.to_string());
        return Ok(());
    }
    let name = credential_name(&target.name);
    if let Some(other) = out.azure_credentials.get(&name) {
        return Err(format!(
            "its federated credential would be named {name}, like that of target {}: rename one",
            other.targets[0]
        ));
    }
    out.azure_credentials.insert(
        name,
        AzureCredential {
            tenant_id: azure.tenant_id.clone(),
            client_id: azure.client_id.clone(),
            subject,
            audience: AZURE_AUDIENCE.to_owned(),
            targets: vec![target.name.to_string()],
        },
    );
    Ok(())
}

/// A federated identity credential's name: 3-120 characters of letters, digits, `-` and `_`,
/// starting with a letter or digit. Target names may also hold `.`.
fn credential_name(target: &str) -> String {
    format!("stsbridge-{target}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests;
