//! The mapping engine: targets (what can be obtained) and rules (who may obtain which targets).
//! This room holds the compiled model; its rooms: `load` and `compile/` (files to model), `index`,
//! `decide`, `explain`, `render`, `delegation`, `scopes` (checks across targets), `cases` (mapping
//! tests), `terraform` (what the clouds must trust), and the parts `condition`, `template`,
//! `sanitize`, `file`.
//!
//! Every `*.yaml` / `*.yml` file directly in the mappings directory is loaded and validated in full;
//! any problem fails the whole load (fail closed), with the file, field path and value named.
//! Rules are indexed by trust entry and exact subject, with one glob set and one regex set per
//! issuer for pattern subjects, so ten thousand partners cost a hash lookup, not a scan.
//!
//! A decision is allow when at least one matching allow rule lists the target and no matching deny
//! rule does. [`render`] turns an allowed target into the provider request, with every templated
//! value sanitized to the cloud's limits.

pub mod cases;
mod compile;
pub mod condition;
mod decide;
pub mod delegation;
mod explain;
pub mod file;
mod index;
mod load;
mod render;
pub mod scopes;

/// Rendered values cut to each cloud's limits: the providers own the clouds' limits.
pub use stsbridge_providers::sanitize;
pub mod template;
pub mod terraform;

use compile::Builder;
pub use decide::Decision;
pub use explain::{ConditionExplanation, RuleExplanation};
use index::{IssuerIndex, build_index};
use load::mapping_files;
pub use load::referenced_issuers;
pub use render::{RenderError, RenderInput, render};

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use globset::{GlobSet, GlobSetBuilder};
use regex::RegexSet;
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;
use stsbridge_providers::aws::{MAX_CHAINED_DURATION, MAX_DURATION, MIN_DURATION};
use stsbridge_providers::request::PassthroughToken;
use stsbridge_providers::{
    AssertionSource, AwsHop, AwsRequest, AzureRequest, GcpRequest, JwtRequest, ProviderRequest,
};

use crate::config::{
    CONFIG_VERSION, ConfigError, ConfigErrors, OWN_TRUST, TrustConfig, format_duration, read_yaml,
    valid_name,
};
use crate::token::ValidatedToken;
use condition::{Check, Condition, Matcher, compile_matcher};
use delegation::PriorAct;
use sanitize::{Field, sanitize};
use template::{RenderContext, Template, TemplateError};

/// Default AWS session duration.
const DEFAULT_AWS_DURATION: Duration = Duration::from_secs(3600);
/// AWS allows at most 50 session tags.
const MAX_SESSION_TAGS: usize = 50;
/// AWS limits an inline session policy to 2048 characters (whitespace removed).
const MAX_SESSION_POLICY_CHARS: usize = 2048;
const DEFAULT_JWT_LIFETIME: Duration = Duration::from_secs(300);
const MIN_JWT_LIFETIME: Duration = Duration::from_secs(30);
/// The shortest lifetime asked of a cloud token: anything shorter is spent on the round trip.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
pub use stsbridge_providers::jwt::MAX_JWT_LIFETIME;
/// Longest chain of `act` claims a minted token may carry.
pub const MAX_DELEGATION_DEPTH: usize = 4;
/// How the default `sub` of a cloud assertion starts (`target:<name>`); no internal token's
/// subject may start so.
pub const ASSERTION_SUBJECT_PREFIX: &str = "target:";

/// The built-in target that allows creating, listing and removing revocations.
pub const REVOKE_TARGET: &str = "stsbridge:revoke";
/// The built-in target that allows introspecting tokens stsbridge minted.
pub const INTROSPECT_TARGET: &str = "stsbridge:introspect";
/// What every built-in target's name starts with: reserved, never a mapping file's target.
pub const BUILTIN_PREFIX: &str = "stsbridge:";
/// The built-in targets: a rule grants one only by naming it (never through `"*"`).
pub const BUILTIN_TARGETS: [&str; 2] = [REVOKE_TARGET, INTROSPECT_TARGET];

/// A target, compiled.
#[derive(Debug)]
pub struct Target {
    /// Name (shared with every request rendered from it).
    pub name: Arc<str>,
    /// The file it came from.
    pub file: PathBuf,
    /// How the cloud is shown an identity.
    pub assertion: AssertionMode,
    /// The provider side.
    pub kind: TargetKind,
    /// Its series of granted exchanges, resolved at the first grant.
    pub grants: crate::metrics::GrantCounter,
}

/// Which token the cloud sees.
#[derive(Debug)]
pub enum AssertionMode {
    /// stsbridge mints one with this `sub` template.
    Mint(Template),
    /// The caller's own token.
    Passthrough,
}

/// Provider-specific parts of a target.
#[derive(Debug)]
pub enum TargetKind {
    /// An AWS role (and chain).
    Aws(AwsTarget),
    /// GCP workload identity federation.
    Gcp(GcpTarget),
    /// An Azure identity.
    Azure(AzureTarget),
    /// An internal JWT.
    Jwt(JwtTarget),
}

impl TargetKind {
    /// The provider's kind.
    pub fn kind(&self) -> stsbridge_providers::ProviderKind {
        use stsbridge_providers::ProviderKind;
        match self {
            TargetKind::Aws(_) => ProviderKind::Aws,
            TargetKind::Gcp(_) => ProviderKind::Gcp,
            TargetKind::Azure(_) => ProviderKind::Azure,
            TargetKind::Jwt(_) => ProviderKind::Jwt,
        }
    }

    /// The provider's name (`aws`, `gcp`, `azure`, `jwt`), as [`ProviderKind`] names it.
    ///
    /// [`ProviderKind`]: stsbridge_providers::ProviderKind
    pub fn provider(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// A compiled AWS target.
#[derive(Debug)]
pub struct AwsTarget {
    role_arn: Arc<str>,
    duration: Duration,
    session_name: Template,
    source_identity: Option<Template>,
    tags: Vec<(String, Template)>,
    transitive_tag_keys: Vec<String>,
    session_policy: Option<Arc<str>>,
    chain: Vec<HopTarget>,
}

impl AwsTarget {
    /// Every role the target assumes: the first hop's, then each chained hop's.
    pub fn roles(&self) -> Vec<&str> {
        std::iter::once(&*self.role_arn)
            .chain(self.chain.iter().map(|h| &*h.role_arn))
            .collect()
    }
}

#[derive(Debug)]
struct HopTarget {
    role_arn: Arc<str>,
    duration: Duration,
    session_name: Option<Template>,
    external_id: Option<Template>,
    session_policy: Option<Arc<str>>,
    tags: Vec<(String, Template)>,
    transitive_tag_keys: Vec<String>,
    source_identity: Option<Template>,
}

/// A compiled GCP target.
#[derive(Debug)]
pub struct GcpTarget {
    audience: String,
    assertion_audience: String,
    /// The impersonated service account, served as the metadata server's `email`.
    pub service_account: Option<String>,
    scopes: Vec<String>,
    lifetime: Duration,
    delegates: Vec<String>,
}

/// A compiled Azure target.
#[derive(Debug)]
pub struct AzureTarget {
    tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Scope (`<resource>/.default`).
    pub scope: String,
}

impl AzureTarget {
    /// The resource the scope is for (the scope without `/.default`), as managed identity
    /// endpoints report it.
    pub fn resource(&self) -> &str {
        stsbridge_providers::azure::resource_of(&self.scope)
    }
}

/// A compiled JWT target.
#[derive(Debug)]
pub struct JwtTarget {
    audience: String,
    scopes: Vec<String>,
    lifetime: Duration,
    /// `None`: the caller's subject qualified by its trust name, `<trust>:<sub>` (a token
    /// stsbridge minted keeps its `sub`, already qualified).
    subject: Option<Template>,
    /// Handed out as a reference token (`format: reference`) rather than the JWT itself.
    pub reference: bool,
    /// What the minted token is bound to (`bind:`), if anything.
    pub bind: Option<Binding>,
}

/// What a minted token is bound to (its `cnf` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The caller's TLS client certificate (RFC 8705, `cnf.x5t#S256`).
    Mtls,
    /// The key of the caller's DPoP proof (RFC 9449, `cnf.jkt`).
    Dpop,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grants its targets.
    Allow,
    /// Refuses its targets, whatever else matched.
    Deny,
}

/// Whether a rule decides or is only watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleMode {
    /// It decides.
    Enforce,
    /// Staged rollout: evaluated, and its would-be effect recorded, but it decides nothing.
    Audit,
}

/// How a rule tests the subject.
#[derive(Debug)]
pub enum SubjectMatcher {
    /// Any subject (`subject: { any: true }`).
    Any,
    /// Exact, one_of, glob or regex.
    Is(Matcher),
}

/// A rule, compiled.
#[derive(Debug)]
pub struct Rule {
    /// Name.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Trust entry name.
    pub issuer: String,
    /// Subject test.
    pub subject: SubjectMatcher,
    /// Claim conditions.
    pub conditions: Vec<Condition>,
    /// Allow or deny.
    pub effect: Effect,
    /// `None` means every target (`"*"`).
    pub targets: Option<HashSet<String>>,
    /// Names the caller's client certificate (mTLS) must have one of, when the rule says.
    pub client_certificate: Option<Matcher>,
    /// The SPIFFE ID the caller's client certificate must have, when the rule says.
    pub client_spiffe_id: Option<Matcher>,
    /// Who may act for the subject (RFC 8693 `actor_token`) under this allow rule; none when
    /// empty.
    pub actors: Vec<ActorMatcher>,
    /// Enforce or audit.
    pub mode: RuleMode,
}

/// One entry of a rule's `actors:`: the same tests as a rule's, applied to the actor token.
#[derive(Debug)]
pub struct ActorMatcher {
    /// Trust entry name (or `stsbridge`).
    pub issuer: String,
    /// Subject test.
    pub subject: SubjectMatcher,
    /// Claim conditions.
    pub conditions: Vec<Condition>,
}

impl ActorMatcher {
    fn matches(&self, actor: &ValidatedToken) -> bool {
        actor.trust == self.issuer
            && match &self.subject {
                SubjectMatcher::Any => true,
                SubjectMatcher::Is(m) => m.matches_str(&actor.subject),
            }
            && self.conditions.iter().all(|c| c.check(&actor.claims).pass)
    }
}

impl Rule {
    fn covers(&self, target: &str) -> bool {
        self.targets.as_ref().is_none_or(|t| t.contains(target))
    }

    /// Whether the rule lists `target` by name (not through `"*"`).
    fn names(&self, target: &str) -> bool {
        self.targets.as_ref().is_some_and(|t| t.contains(target))
    }

    fn subject_matches(&self, subject: &str) -> bool {
        match &self.subject {
            SubjectMatcher::Any => true,
            SubjectMatcher::Is(m) => m.matches_str(subject),
        }
    }

    fn subject_check(&self, subject: &str) -> Check {
        Check {
            pass: self.subject_matches(subject),
            actual: Some(subject.to_owned()),
        }
    }

    /// `client_certificate:` over the certificate's DNS names (`client_names` less its SPIFFE
    /// ID).
    fn dns_check(&self, client_names: &[String]) -> Option<Check> {
        let m = self.client_certificate.as_ref()?;
        let dns: Vec<&str> = client_names
            .iter()
            .map(String::as_str)
            .filter(|n| !n.starts_with(crate::tls::SPIFFE_SCHEME))
            .collect();
        Some(Check {
            pass: dns.iter().any(|n| m.matches_str(n)),
            actual: (!dns.is_empty()).then(|| dns.join(",")),
        })
    }

    /// `client_spiffe_id:` over the certificate's SPIFFE ID (the `spiffe://` entry of
    /// `client_names`).
    fn spiffe_check(&self, client_names: &[String]) -> Option<Check> {
        let m = self.client_spiffe_id.as_ref()?;
        let id = client_names
            .iter()
            .find(|n| n.starts_with(crate::tls::SPIFFE_SCHEME));
        Some(Check {
            pass: id.is_some_and(|id| m.matches_str(id)),
            actual: id.cloned(),
        })
    }

    /// Both certificate requirements together; `None` when the rule has neither.
    fn client_check(&self, client_names: &[String]) -> Option<Check> {
        match (
            self.dns_check(client_names),
            self.spiffe_check(client_names),
        ) {
            (None, None) => None,
            (dns, spiffe) => Some(Check {
                pass: dns.as_ref().is_none_or(|c| c.pass) && spiffe.as_ref().is_none_or(|c| c.pass),
                actual: (!client_names.is_empty()).then(|| client_names.join(",")),
            }),
        }
    }

    fn conditions_pass(&self, claims: &serde_json::Map<String, Value>) -> bool {
        self.conditions.iter().all(|c| c.check(claims).pass)
    }

    /// Whether this rule lets `actor` act for its subject.
    pub fn admits_actor(&self, actor: &ValidatedToken) -> bool {
        self.actors.iter().any(|a| a.matches(actor))
    }
}

/// All targets and rules, indexed.
#[derive(Debug, Default)]
pub struct Mappings {
    targets: HashMap<String, Arc<Target>>,
    rules: Vec<Rule>,
    index: HashMap<String, IssuerIndex>,
    files: Vec<PathBuf>,
    partner_trust: Vec<(PathBuf, Vec<TrustConfig>)>,
}

impl Mappings {
    /// The trust entries of partner files.
    pub fn partner_trust(&self) -> impl Iterator<Item = &TrustConfig> {
        self.partner_trust.iter().flat_map(|(_, e)| e.iter())
    }

    /// The files loaded.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The audiences of the internal JWT targets, sorted: what stsbridge's own tokens may carry
    /// when they come back.
    pub fn jwt_audiences(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .targets
            .values()
            .filter_map(|t| match &t.kind {
                TargetKind::Jwt(j) => Some(j.audience.clone()),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The trust entries of partner files that name stsbridge's own issuer URL (an error).
    pub fn own_issuer_errors(&self, own_url: &str) -> Vec<ConfigError> {
        self.partner_trust
            .iter()
            .flat_map(|(file, entries)| crate::config::check_own_issuer(file, own_url, entries))
            .collect()
    }

    /// Number of targets.
    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// A target by name.
    pub fn target(&self, name: &str) -> Option<&Arc<Target>> {
        self.targets.get(name)
    }

    /// Target names, sorted.
    pub fn target_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.targets.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

#[cfg(test)]
mod tests;
