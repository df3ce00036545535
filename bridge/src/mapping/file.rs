//! Mapping files as users write them (`mappings/*.yaml`). Unknown keys are rejected.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value as Yaml};

use crate::config::ConfigDuration;

/// One mapping file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// Format version; must be 1.
    pub version: u32,
    /// Issuers this file trusts (a partner file: its issuer, rules and targets in one place).
    #[serde(default)]
    pub trust: Vec<crate::config::file::TrustFile>,
    /// What can be obtained.
    #[serde(default)]
    pub targets: Vec<TargetFile>,
    /// Who may obtain which targets.
    #[serde(default)]
    pub rules: Vec<RuleFile>,
}

/// One target.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    /// Name callers ask for.
    pub name: String,
    /// Free text for reviewers.
    pub description: Option<String>,
    /// Template for the minted assertion's `sub` (default `target:<name>`).
    pub assertion_subject: Option<String>,
    /// `mint` (default) or `passthrough`.
    pub assertion: Option<String>,
    /// An AWS role.
    pub aws: Option<AwsTargetFile>,
    /// An internal JWT.
    pub jwt: Option<JwtTargetFile>,
    /// GCP workload identity federation (and a service account).
    pub gcp: Option<GcpTargetFile>,
    /// An Azure app registration or user-assigned identity.
    pub azure: Option<AzureTargetFile>,
}

/// `targets[].gcp`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcpTargetFile {
    /// The workload identity pool provider:
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/V`.
    pub audience: String,
    /// `aud` of the minted assertion (default: the provider's default allowed audience,
    /// `https:` followed by `audience`).
    pub assertion_audience: Option<String>,
    /// Service account to impersonate; without it the federated token is returned.
    pub service_account: Option<String>,
    /// OAuth scopes (default cloud-platform).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Token lifetime with impersonation (default 1h).
    pub lifetime: Option<ConfigDuration>,
    /// Service accounts in the delegation chain.
    #[serde(default)]
    pub delegates: Vec<String>,
    /// The organization policy `iam.allowServiceAccountCredentialLifetimeExtension` allows up to 12h.
    #[serde(default)]
    pub allow_lifetime_extension: bool,
}

/// `targets[].azure`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureTargetFile {
    /// Tenant id (GUID) or verified domain.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Scope, ending in `/.default`.
    pub scope: String,
}

/// `targets[].aws`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsTargetFile {
    /// Role of the first hop.
    pub role_arn: String,
    /// Session duration (default 1h).
    pub duration: Option<ConfigDuration>,
    /// Template (default `{{ subject }}`).
    pub session_name: Option<String>,
    /// Template.
    pub source_identity: Option<String>,
    /// Tag key to value template.
    #[serde(default)]
    pub session_tags: BTreeMap<String, String>,
    /// Tags that survive role chaining.
    #[serde(default)]
    pub transitive_tag_keys: Vec<String>,
    /// Session policy JSON, relative to the mapping file.
    pub session_policy_file: Option<PathBuf>,
    /// Chained hops.
    #[serde(default)]
    pub chain: Vec<HopFile>,
}

/// `targets[].aws.chain[]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HopFile {
    /// Role to assume.
    pub role_arn: String,
    /// Template for `ExternalId`.
    pub external_id: Option<String>,
    /// Session duration (default and maximum 1h).
    pub duration: Option<ConfigDuration>,
    /// Template (default: the first hop's session name).
    pub session_name: Option<String>,
    /// Session policy JSON, relative to the mapping file.
    pub session_policy_file: Option<PathBuf>,
    /// Tag key to value template.
    #[serde(default)]
    pub session_tags: BTreeMap<String, String>,
    /// Tags that survive further chaining.
    #[serde(default)]
    pub transitive_tag_keys: Vec<String>,
    /// Template for `SourceIdentity` (default: the first hop's).
    pub source_identity: Option<String>,
}

/// `targets[].jwt`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtTargetFile {
    /// `aud` of minted tokens.
    pub audience: String,
    /// The most a token may carry; requests narrow it.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Lifetime (default 5m).
    pub lifetime: Option<ConfigDuration>,
    /// Template for `sub` (default `{{ subject }}`).
    pub subject: Option<String>,
    /// `jwt` (default): the signed token; `reference`: an opaque handle (`sbr_...`) whose claims
    /// resource servers read by introspection.
    pub format: Option<String>,
    /// `mtls`: the token is bound to the caller's TLS client certificate (RFC 8705 `cnf`);
    /// `dpop`: to the key of the caller's DPoP proof (RFC 9449).
    pub bind: Option<String>,
}

/// One rule.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Name, unique across files.
    pub name: String,
    /// Free text for reviewers.
    pub description: Option<String>,
    /// A `trust:` entry's name.
    pub issuer: String,
    /// Exact, `{glob}`, `{regex}`, `{one_of}`, or `{any: true}`.
    #[schemars(with = "Option<MatcherSchema>")]
    pub subject: Option<Yaml>,
    /// Claim conditions, all of which must pass.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, MatcherSchema>")]
    pub claims: Mapping,
    /// Names the caller's client certificate must have (mTLS listeners only): exact, `{glob}`,
    /// `{regex}` or `{one_of}` over its DNS names.
    #[schemars(with = "Option<MatcherSchema>")]
    pub client_certificate: Option<Yaml>,
    /// The SPIFFE ID the caller's client certificate must have (its `spiffe://` URI SAN): exact,
    /// `{glob}`, `{regex}` or `{one_of}`.
    #[schemars(with = "Option<MatcherSchema>")]
    pub client_spiffe_id: Option<Yaml>,
    /// Targets granted.
    pub allow: Option<Vec<String>>,
    /// Targets refused (wins over any allow).
    pub deny: Option<Vec<String>>,
    /// `enforce` (the default) or `audit`: evaluated and recorded, granting and refusing nothing.
    pub mode: Option<String>,
    /// Who may act for the subject (RFC 8693 `actor_token`) under this allow rule.
    #[serde(default)]
    pub actors: Vec<ActorFile>,
}

/// `rules[].actors[]`: an actor token's issuer, subject and claim conditions, as in a rule.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorFile {
    /// A `trust:` entry's name, or `stsbridge`.
    pub issuer: String,
    /// Exact, `{glob}`, `{regex}`, `{one_of}`, or `{any: true}`.
    #[schemars(with = "Option<MatcherSchema>")]
    pub subject: Option<Yaml>,
    /// Claim conditions, all of which must pass.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, MatcherSchema>")]
    pub claims: Mapping,
}

/// A matcher in the JSON Schemas: an exact value (string, number, boolean), or an object with one
/// of `glob`, `regex`, `one_of`, `contains`, `exists`, `any` (the mapping engine checks which apply
/// where, with messages naming the field).
pub struct MatcherSchema;

impl schemars::JsonSchema for MatcherSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Matcher".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An exact value, or one of {glob}, {regex}, {one_of}, {contains}, {exists}, {any: true}.",
            "anyOf": [
                { "type": ["string", "number", "boolean"] },
                {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1,
                    "propertyNames": { "enum": ["glob", "regex", "one_of", "contains", "exists", "any"] }
                }
            ]
        })
    }
}
