//! The mapping engine: targets (what can be obtained) and rules (who may obtain which targets).
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
pub mod condition;
pub mod delegation;
pub mod file;
pub mod sanitize;
pub mod scopes;
pub mod template;
pub mod terraform;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use globset::{GlobSet, GlobSetBuilder};
use regex::RegexSet;
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;
use stsbridge_providers::aws::{MAX_CHAINED_DURATION, MAX_DURATION, MIN_DURATION};
use stsbridge_providers::gcp;
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
/// Internal tokens are for service-to-service calls: an hour is the most they should live.
pub const MAX_JWT_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest chain of `act` claims a minted token may carry.
pub const MAX_DELEGATION_DEPTH: usize = 4;
/// How the default `sub` of a cloud assertion starts (`target:<name>`); no internal token's
/// subject may start so.
pub const ASSERTION_SUBJECT_PREFIX: &str = "target:";

/// A target, compiled.
#[derive(Debug)]
pub struct Target {
    /// Name.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// How the cloud is shown an identity.
    pub assertion: AssertionMode,
    /// The provider side.
    pub kind: TargetKind,
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
    /// The provider's name.
    pub fn provider(&self) -> &'static str {
        match self {
            TargetKind::Aws(_) => "aws",
            TargetKind::Gcp(_) => "gcp",
            TargetKind::Azure(_) => "azure",
            TargetKind::Jwt(_) => "jwt",
        }
    }
}

/// A compiled AWS target.
#[derive(Debug)]
pub struct AwsTarget {
    role_arn: String,
    duration: Duration,
    session_name: Template,
    source_identity: Option<Template>,
    tags: Vec<(String, Template)>,
    transitive_tag_keys: Vec<String>,
    session_policy: Option<Arc<str>>,
    chain: Vec<HopTarget>,
}

#[derive(Debug)]
struct HopTarget {
    role_arn: String,
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
        self.scope.strip_suffix("/.default").unwrap_or(&self.scope)
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

    fn client_check(&self, client_names: &[String]) -> Option<Check> {
        let m = self.client_certificate.as_ref()?;
        let pass = client_names.iter().any(|n| m.matches_str(n));
        Some(Check {
            pass,
            actual: (!client_names.is_empty()).then(|| client_names.join(",")),
        })
    }

    fn conditions_pass(&self, claims: &serde_json::Map<String, Value>) -> bool {
        self.conditions.iter().all(|c| c.check(claims).pass)
    }

    /// Whether this rule lets `actor` act for its subject.
    pub fn admits_actor(&self, actor: &ValidatedToken) -> bool {
        self.actors.iter().any(|a| a.matches(actor))
    }
}

#[derive(Debug, Default)]
struct IssuerIndex {
    exact: HashMap<String, Vec<usize>>,
    globs: Option<(GlobSet, Vec<usize>)>,
    regexes: Option<(RegexSet, Vec<usize>)>,
    any: Vec<usize>,
    /// Glob and regex rules of an issuer with few of them, tested one by one with their own
    /// matchers: building a set for a handful costs more at load than it saves per decision.
    few: Vec<usize>,
    all: Vec<usize>,
    /// Some of the issuer's rules are in audit mode.
    audit: bool,
}

/// The outcome of a decision.
#[derive(Debug)]
pub enum Decision<'a> {
    /// Granted by `rule`.
    Allow {
        /// The first matching allow rule.
        rule: &'a Rule,
        /// The target.
        target: &'a Arc<Target>,
    },
    /// Refused.
    Deny {
        /// The matching deny rule, or `None` when no allow rule matched.
        rule: Option<&'a Rule>,
    },
    /// Allow rules matched the subject, but none of them lists the actor in `actors:`.
    ActorNotAllowed {
        /// The first allow rule that matched the subject.
        rule: &'a Rule,
    },
    /// No such target.
    UnknownTarget,
}

/// Why rendering failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A template read a claim the token lacks or cannot use.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A requested scope is not available for the target.
    #[error("scope {0:?} is not available for this target")]
    ScopeNotAvailable(String),
    /// The delegation chain would be too long.
    #[error("the delegation chain would be longer than {MAX_DELEGATION_DEPTH} actors")]
    DelegationTooDeep,
    /// An internal token's subject would read like a cloud assertion's (`target:...`).
    #[error("the token's subject would start with target:, which only cloud assertions use")]
    ReservedSubject,
}

/// Everything a render may read.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    /// The validated subject token.
    pub token: &'a ValidatedToken,
    /// The raw subject token (handed on by passthrough targets only).
    pub raw_token: &'a str,
    /// Scopes requested (RFC 8693 `scope`); `None` means all of the target's.
    pub requested_scopes: Option<&'a [String]>,
    /// The validated actor token (RFC 8693 delegation).
    pub actor: Option<&'a ValidatedToken>,
    /// The subject token's own delegation chain, as its trust allows it to be carried on.
    pub prior_act: &'a PriorAct,
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
    /// Loads every mapping file in `dir`; rules may only name issuers in `trust_names`.
    pub fn load(dir: &Path, trust_names: &HashSet<String>) -> Result<Mappings, ConfigErrors> {
        let files = mapping_files(dir)?;
        let mut sources = Vec::with_capacity(files.len());
        let mut errors = Vec::new();
        for path in files {
            match crate::config::read_text(&path) {
                Ok(text) => sources.push((path, text)),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Self::compile(dir, &sources, trust_names)
    }

    /// Compiles mapping files given as (path, text); `dir` names the set in errors of the whole.
    /// Session policy files are read relative to each file's path.
    pub fn compile(
        dir: &Path,
        sources: &[(PathBuf, String)],
        trust_names: &HashSet<String>,
    ) -> Result<Mappings, ConfigErrors> {
        let files: Vec<PathBuf> = sources.iter().map(|(p, _)| p.clone()).collect();
        let mut b = Builder {
            errors: Vec::new(),
            targets: HashMap::new(),
            rules: Vec::new(),
        };
        let mut raw_rules = Vec::new();
        let mut placed: Vec<(PathBuf, usize, String)> = Vec::new();
        let mut partner_trust: Vec<(PathBuf, Vec<TrustConfig>)> = Vec::new();
        for ((path, _), parsed) in sources.iter().zip(parse_all(sources)) {
            match parsed {
                Err(e) => b.errors.push(e),
                Ok(raw) => {
                    if raw.version != CONFIG_VERSION {
                        b.errors.push(ConfigError::new(
                            path,
                            "version",
                            format!(
                                "unsupported version {}; this build reads version {CONFIG_VERSION}",
                                raw.version
                            ),
                        ));
                        continue;
                    }
                    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                    let mut entries = Vec::new();
                    for (i, t) in raw.trust.into_iter().enumerate() {
                        let mut entry = crate::config::compile_trust(
                            path,
                            &base,
                            &format!("trust[{i}]"),
                            t,
                            &mut b.errors,
                        );
                        entry.lazy_jwks = true;
                        entries.push(entry);
                    }
                    if !entries.is_empty() {
                        partner_trust.push((path.clone(), entries));
                    }
                    for (i, t) in raw.targets.into_iter().enumerate() {
                        placed.push((path.clone(), i, t.name.clone()));
                        b.target(path, i, t);
                    }
                    raw_rules.extend(
                        raw.rules
                            .into_iter()
                            .enumerate()
                            .map(|(i, r)| (path.clone(), i, r)),
                    );
                }
            }
        }
        // Rules second: they refer to targets of any file, and to trust entries of the config or of
        // any partner file.
        let mut all_names = trust_names.clone();
        all_names.insert(OWN_TRUST.to_owned());
        for (_, entries) in &partner_trust {
            all_names.extend(entries.iter().map(|t| t.name.clone()));
        }
        let trust_names = &all_names;
        let sets: Vec<(&Path, &[TrustConfig])> = partner_trust
            .iter()
            .map(|(p, e)| (p.as_path(), e.as_slice()))
            .collect();
        b.errors.extend(crate::config::check_unique_trust(&sets));
        let mut rule_names = HashSet::new();
        for (path, i, r) in &raw_rules {
            if !rule_names.insert(r.name.as_str()) {
                b.errors.push(ConfigError::new(
                    path,
                    format!("rules[{i}].name"),
                    format!("{:?} is also the name of another rule", r.name),
                ));
            }
        }
        let (rules, errors) = compile_rules(&b.targets, raw_rules, trust_names);
        b.rules = rules;
        b.errors.extend(errors);
        let placed: Vec<scopes::Placed<'_>> = placed
            .iter()
            .filter_map(|(file, index, name)| {
                let target = b.targets.get(name).filter(|t| &t.file == file)?;
                Some(scopes::Placed {
                    file,
                    index: *index,
                    target,
                })
            })
            .collect();
        let scope_errors = scopes::check(&placed);
        b.errors.extend(scope_errors);
        if !b.errors.is_empty() {
            return Err(ConfigErrors(b.errors));
        }
        let index = build_index(&b.rules).map_err(|m| ConfigError::new(dir, ".", m))?;
        Ok(Mappings {
            targets: b.targets,
            rules: b.rules,
            index,
            files,
            partner_trust,
        })
    }

    /// Loads the mappings of `dir` and returns them with the whole trust list: `config_trust`
    /// (from `config_file`) plus the trust entries of partner files, which must not repeat a
    /// name or an issuer.
    pub fn load_with_trust(
        dir: &Path,
        config_trust: &[TrustConfig],
        config_file: &Path,
    ) -> Result<(Mappings, Vec<TrustConfig>), ConfigErrors> {
        let names: HashSet<String> = config_trust.iter().map(|t| t.name.clone()).collect();
        let mappings = Self::load(dir, &names)?;
        let mut sets: Vec<(&Path, &[TrustConfig])> = vec![(config_file, config_trust)];
        sets.extend(
            mappings
                .partner_trust
                .iter()
                .map(|(p, e)| (p.as_path(), e.as_slice())),
        );
        let errors = crate::config::check_unique_trust(&sets);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut trust = config_trust.to_vec();
        trust.extend(
            mappings
                .partner_trust
                .iter()
                .flat_map(|(_, e)| e.iter().cloned()),
        );
        Ok((mappings, trust))
    }

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

    /// Decides whether `token` may obtain `target` (a caller without a client certificate).
    pub fn decide(&self, token: &ValidatedToken, target: &str) -> Decision<'_> {
        self.decide_for(token, &[], target)
    }

    /// Decides whether `token`, from a caller whose client certificate has `client_names`, may
    /// obtain `target`.
    pub fn decide_for(
        &self,
        token: &ValidatedToken,
        client_names: &[String],
        target: &str,
    ) -> Decision<'_> {
        self.decide_with_actor(token, client_names, target, None)
    }

    /// As [`decide_for`](Self::decide_for), for a subject `actor` acts for: an allow rule that
    /// matched the subject must also list the actor in its `actors:`.
    pub fn decide_with_actor(
        &self,
        token: &ValidatedToken,
        client_names: &[String],
        target: &str,
        actor: Option<&ValidatedToken>,
    ) -> Decision<'_> {
        let Some(t) = self.targets.get(target) else {
            return Decision::UnknownTarget;
        };
        let mut allow = None;
        let mut without_actor = None;
        for i in self.candidates(&token.trust, &token.subject) {
            let rule = &self.rules[i];
            if rule.mode == RuleMode::Audit
                || !rule.covers(target)
                || !rule.conditions_pass(&token.claims)
                || rule.client_check(client_names).is_some_and(|c| !c.pass)
            {
                continue;
            }
            match rule.effect {
                Effect::Deny => return Decision::Deny { rule: Some(rule) },
                Effect::Allow => match actor {
                    Some(a) if !rule.admits_actor(a) => {
                        without_actor.get_or_insert(rule);
                    }
                    _ => {
                        allow.get_or_insert(rule);
                    }
                },
            }
        }
        match (allow, without_actor) {
            (Some(rule), _) => Decision::Allow { rule, target: t },
            (None, Some(rule)) => Decision::ActorNotAllowed { rule },
            (None, None) => Decision::Deny { rule: None },
        }
    }

    /// Indices of the rules of `trust` whose subject test passes, in file order.
    fn candidates(&self, trust: &str, subject: &str) -> Vec<usize> {
        let Some(ix) = self.index.get(trust) else {
            return Vec::new();
        };
        let mut out: Vec<usize> = ix.exact.get(subject).cloned().unwrap_or_default();
        if let Some((set, rules)) = &ix.globs {
            out.extend(set.matches(subject).into_iter().map(|m| rules[m]));
        }
        if let Some((set, rules)) = &ix.regexes {
            out.extend(set.matches(subject).into_iter().map(|m| rules[m]));
        }
        out.extend(
            ix.few
                .iter()
                .copied()
                .filter(|&i| self.rules[i].subject_matches(subject)),
        );
        out.extend_from_slice(&ix.any);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The audit-mode rules that match this request, with what each would do if enforced. Empty
    /// at no cost for issuers without audit rules.
    pub fn shadow_for(
        &self,
        token: &ValidatedToken,
        client_names: &[String],
        target: &str,
    ) -> Vec<&Rule> {
        if !self.index.get(&token.trust).is_some_and(|ix| ix.audit) {
            return Vec::new();
        }
        self.candidates(&token.trust, &token.subject)
            .into_iter()
            .map(|i| &self.rules[i])
            .filter(|rule| {
                rule.mode == RuleMode::Audit
                    && rule.covers(target)
                    && rule.conditions_pass(&token.claims)
                    && rule.client_check(client_names).is_none_or(|c| c.pass)
            })
            .collect()
    }

    /// Every rule of the token's issuer that mentions `target`, with each test's outcome.
    pub fn explain(&self, token: &ValidatedToken, target: &str) -> Vec<RuleExplanation> {
        self.explain_for(token, &[], target)
    }

    /// As [`explain`](Self::explain), for a caller whose client certificate has `client_names`.
    pub fn explain_for(
        &self,
        token: &ValidatedToken,
        client_names: &[String],
        target: &str,
    ) -> Vec<RuleExplanation> {
        let Some(ix) = self.index.get(&token.trust) else {
            return Vec::new();
        };
        ix.all
            .iter()
            .map(|&i| &self.rules[i])
            .filter(|r| r.covers(target))
            .map(|rule| {
                let subject = rule.subject_check(&token.subject);
                let mut conditions: Vec<ConditionExplanation> = rule
                    .conditions
                    .iter()
                    .map(|c| ConditionExplanation {
                        claim: c.claim.clone(),
                        test: c.matcher.describe(),
                        check: c.check(&token.claims),
                    })
                    .collect();
                if let (Some(check), Some(m)) =
                    (rule.client_check(client_names), &rule.client_certificate)
                {
                    conditions.push(ConditionExplanation {
                        claim: "client certificate".into(),
                        test: m.describe(),
                        check,
                    });
                }
                let matched = subject.pass && conditions.iter().all(|c| c.check.pass);
                RuleExplanation {
                    rule: rule.name.clone(),
                    file: rule.file.clone(),
                    effect: rule.effect,
                    mode: rule.mode,
                    subject_test: match &rule.subject {
                        SubjectMatcher::Any => "any".into(),
                        SubjectMatcher::Is(m) => m.describe(),
                    },
                    subject,
                    conditions,
                    matched,
                }
            })
            .collect()
    }
}

/// One rule's evaluation, for `stsbridge explain`.
#[derive(Debug)]
pub struct RuleExplanation {
    /// Rule name.
    pub rule: String,
    /// Its file.
    pub file: PathBuf,
    /// Allow or deny.
    pub effect: Effect,
    /// Enforce or audit.
    pub mode: RuleMode,
    /// How the subject is tested.
    pub subject_test: String,
    /// The subject test's outcome.
    pub subject: Check,
    /// Each claim condition's outcome.
    pub conditions: Vec<ConditionExplanation>,
    /// Whether the whole rule matched.
    pub matched: bool,
}

impl RuleExplanation {
    /// The explanation as `stsbridge explain` and `stsbridge test` print it: the rule, then each
    /// test with its outcome and the value the token had.
    pub fn render(&self, subject: &str) -> String {
        use std::fmt::Write as _;
        let effect = match (self.effect, self.mode) {
            (Effect::Allow, RuleMode::Enforce) => "allow",
            (Effect::Deny, RuleMode::Enforce) => "deny",
            (Effect::Allow, RuleMode::Audit) => "allow, audit mode: grants nothing",
            (Effect::Deny, RuleMode::Audit) => "deny, audit mode: refuses nothing",
        };
        let mut out = format!(
            "rule {} ({effect}, {}): {}\n",
            self.rule,
            self.file.display(),
            if self.matched {
                "MATCHES"
            } else {
                "does not match"
            }
        );
        let _ = writeln!(
            out,
            "  [{}] subject {} (token: {subject:?})",
            mark(self.subject.pass),
            self.subject_test
        );
        for c in &self.conditions {
            let seen = c
                .check
                .actual
                .as_deref()
                .map_or("absent".to_owned(), |v| format!("{v:?}"));
            let _ = writeln!(
                out,
                "  [{}] {} {} (token: {seen})",
                mark(c.check.pass),
                c.claim,
                c.test
            );
        }
        out
    }

    /// The tests that failed, as the caller may be told them (`explain_denials`): what each
    /// tests, never what else the configuration holds.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.subject.pass {
            out.push(format!("subject {}", self.subject_test));
        }
        out.extend(
            self.conditions
                .iter()
                .filter(|c| !c.check.pass)
                .map(|c| format!("{} {}", c.claim, c.test)),
        );
        out
    }
}

fn mark(pass: bool) -> &'static str {
    if pass { "pass" } else { "FAIL" }
}

/// One condition's evaluation.
#[derive(Debug)]
pub struct ConditionExplanation {
    /// The claim.
    pub claim: String,
    /// The test.
    pub test: String,
    /// The outcome.
    pub check: Check,
}

/// Renders the provider request for an allowed target.
pub fn render(target: &Target, input: &RenderInput<'_>) -> Result<ProviderRequest, RenderError> {
    let token = input.token;
    let ctx = RenderContext {
        subject: &token.subject,
        issuer: &token.trust,
        target: &target.name,
        claims: &token.claims,
    };
    let field = |t: &Template, f: Field| t.render(&ctx).map(|s| sanitize(f, &s));
    let opt = |t: &Option<Template>, f: Field| t.as_ref().map(|t| field(t, f)).transpose();
    let tags = |tags: &[(String, Template)]| -> Result<Vec<(String, String)>, TemplateError> {
        tags.iter()
            .map(|(k, t)| Ok((k.clone(), field(t, Field::AwsTagValue)?)))
            .collect()
    };
    let assertion = || -> Result<AssertionSource, TemplateError> {
        Ok(match &target.assertion {
            AssertionMode::Mint(subject) => AssertionSource::Mint {
                subject: field(subject, Field::AssertionSubject)?,
            },
            AssertionMode::Passthrough => {
                AssertionSource::Passthrough(PassthroughToken::new(input.raw_token))
            }
        })
    };
    match &target.kind {
        TargetKind::Gcp(gcp) => Ok(ProviderRequest::Gcp(GcpRequest {
            target: target.name.clone(),
            assertion: assertion()?,
            audience: gcp.audience.clone(),
            assertion_audience: gcp.assertion_audience.clone(),
            scopes: gcp.scopes.clone(),
            service_account: gcp.service_account.clone(),
            lifetime: gcp.lifetime,
            delegates: gcp.delegates.clone(),
        })),
        TargetKind::Azure(azure) => Ok(ProviderRequest::Azure(AzureRequest {
            target: target.name.clone(),
            assertion: assertion()?,
            tenant_id: azure.tenant_id.clone(),
            client_id: azure.client_id.clone(),
            scope: azure.scope.clone(),
        })),
        TargetKind::Aws(aws) => {
            let assertion = assertion()?;
            let session_name = field(&aws.session_name, Field::AwsSessionName)?;
            let source_identity = opt(&aws.source_identity, Field::AwsSourceIdentity)?;
            let mut chain = Vec::with_capacity(aws.chain.len());
            for hop in &aws.chain {
                chain.push(AwsHop {
                    role_arn: hop.role_arn.clone(),
                    session_name: opt(&hop.session_name, Field::AwsSessionName)?
                        .unwrap_or_else(|| session_name.clone()),
                    duration: hop.duration,
                    external_id: opt(&hop.external_id, Field::AwsExternalId)?,
                    session_policy: hop.session_policy.clone(),
                    tags: tags(&hop.tags)?,
                    transitive_tag_keys: hop.transitive_tag_keys.clone(),
                    source_identity: opt(&hop.source_identity, Field::AwsSourceIdentity)?
                        .or_else(|| source_identity.clone()),
                });
            }
            Ok(ProviderRequest::Aws(AwsRequest {
                target: target.name.clone(),
                assertion,
                role_arn: aws.role_arn.clone(),
                session_name,
                duration: aws.duration,
                session_policy: aws.session_policy.clone(),
                tags: tags(&aws.tags)?,
                transitive_tag_keys: aws.transitive_tag_keys.clone(),
                source_identity,
                chain,
            }))
        }
        TargetKind::Jwt(jwt) => {
            let scopes = match input.requested_scopes {
                None => jwt.scopes.clone(),
                Some(requested) => {
                    if let Some(extra) = requested.iter().find(|s| !jwt.scopes.contains(s)) {
                        return Err(RenderError::ScopeNotAvailable(extra.clone()));
                    }
                    let set: BTreeSet<String> = requested.iter().cloned().collect();
                    set.into_iter().collect()
                }
            };
            let act = delegation::delegation(input.prior_act, input.actor)?;
            let subject = match &jwt.subject {
                Some(t) => field(t, Field::JwtSubject)?,
                None if token.trust == OWN_TRUST => sanitize(Field::JwtSubject, &token.subject),
                None => sanitize(
                    Field::JwtSubject,
                    &format!("{}:{}", token.trust, token.subject),
                ),
            };
            if subject.starts_with(ASSERTION_SUBJECT_PREFIX) {
                return Err(RenderError::ReservedSubject);
            }
            Ok(ProviderRequest::Jwt(JwtRequest {
                target: target.name.clone(),
                audience: jwt.audience.clone(),
                subject,
                scopes,
                lifetime: jwt.lifetime,
                act: act.map(|a| a.to_string()),
            }))
        }
    }
}

/// The issuer names the rules in `dir` refer to that no partner file there defines (dev mode
/// trusts a built-in issuer for each).
pub fn referenced_issuers(dir: &Path) -> Result<BTreeSet<String>, ConfigErrors> {
    let mut out = BTreeSet::new();
    let mut defined = BTreeSet::new();
    for path in mapping_files(dir)? {
        let raw: file::MappingFile = read_yaml(&path)?;
        out.extend(raw.rules.into_iter().map(|r| r.issuer));
        defined.extend(raw.trust.into_iter().map(|t| t.name));
    }
    Ok(out.difference(&defined).cloned().collect())
}

/// The `*.yaml`/`*.yml` files directly in `dir`, sorted.
fn mapping_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::new(dir, ".", format!("cannot read the mappings directory: {e}"))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Compiles rules in order, on every core when there are many.
fn compile_rules(
    targets: &HashMap<String, Arc<Target>>,
    raw: Vec<(PathBuf, usize, file::RuleFile)>,
    trust_names: &HashSet<String>,
) -> (Vec<Rule>, Vec<ConfigError>) {
    let compile = |part: Vec<(PathBuf, usize, file::RuleFile)>| {
        let mut b = Builder {
            errors: Vec::new(),
            targets: targets.clone(),
            rules: Vec::new(),
        };
        for (path, i, r) in part {
            b.rule(&path, i, r, trust_names);
        }
        (b.rules, b.errors)
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if raw.len() < 256 || threads < 2 {
        return compile(raw);
    }
    let chunk = raw.len().div_ceil(threads);
    let mut parts = Vec::new();
    let mut rest = raw;
    while rest.len() > chunk {
        let tail = rest.split_off(chunk);
        parts.push(rest);
        rest = tail;
    }
    parts.push(rest);
    std::thread::scope(|scope| {
        let workers: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || compile(part)))
            .collect();
        let (mut rules, mut errors) = (Vec::new(), Vec::new());
        for w in workers {
            let (r, e) = w
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            rules.extend(r);
            errors.extend(e);
        }
        (rules, errors)
    })
}

/// Parses mapping files, on every core when there are many (thousands of partner files).
fn parse_all(sources: &[(PathBuf, String)]) -> Vec<Result<file::MappingFile, ConfigError>> {
    let parse = |(path, text): &(PathBuf, String)| crate::config::parse_yaml(path, text);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if sources.len() < 256 || threads < 2 {
        return sources.iter().map(parse).collect();
    }
    let chunk = sources.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = sources
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(parse).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Up to this many glob (or regex) subjects per issuer are tested one by one rather than as a set.
const FEW_PATTERNS: usize = 4;

fn build_index(rules: &[Rule]) -> Result<HashMap<String, IssuerIndex>, String> {
    let mut index: HashMap<String, IssuerIndex> = HashMap::new();
    let mut globs: HashMap<&str, (GlobSetBuilder, Vec<usize>)> = HashMap::new();
    let mut regexes: HashMap<&str, (Vec<String>, Vec<usize>)> = HashMap::new();
    for (i, rule) in rules.iter().enumerate() {
        let ix = index.entry(rule.issuer.clone()).or_default();
        ix.all.push(i);
        ix.audit |= rule.mode == RuleMode::Audit;
        match &rule.subject {
            SubjectMatcher::Any => ix.any.push(i),
            SubjectMatcher::Is(Matcher::Exact(s)) => ix.exact.entry(s.clone()).or_default().push(i),
            SubjectMatcher::Is(Matcher::OneOf(list)) => {
                for s in list {
                    ix.exact.entry(s.clone()).or_default().push(i);
                }
            }
            SubjectMatcher::Is(Matcher::Glob(p, _)) => {
                let (b, ids) = globs
                    .entry(&rule.issuer)
                    .or_insert_with(|| (GlobSetBuilder::new(), Vec::new()));
                b.add(globset::Glob::new(p).map_err(|e| e.to_string())?);
                ids.push(i);
            }
            SubjectMatcher::Is(Matcher::Regex(p, _)) => {
                let (ps, ids) = regexes.entry(&rule.issuer).or_default();
                ps.push(format!("^(?:{p})$"));
                ids.push(i);
            }
            // compile_subject never produces the other matchers
            SubjectMatcher::Is(_) => ix.any.push(i),
        }
    }
    for (issuer, (builder, ids)) in globs {
        if ids.len() <= FEW_PATTERNS {
            if let Some(ix) = index.get_mut(issuer) {
                ix.few.extend(ids);
            }
            continue;
        }
        let set = builder
            .build()
            .map_err(|e| format!("subject globs of {issuer}: {e}"))?;
        if let Some(ix) = index.get_mut(issuer) {
            ix.globs = Some((set, ids));
        }
    }
    for (issuer, (patterns, ids)) in regexes {
        if ids.len() <= FEW_PATTERNS {
            if let Some(ix) = index.get_mut(issuer) {
                ix.few.extend(ids);
            }
            continue;
        }
        let set = regex::RegexSetBuilder::new(patterns)
            .size_limit(64 << 20)
            .build()
            .map_err(|e| format!("subject regexes of {issuer}: {e}"))?;
        if let Some(ix) = index.get_mut(issuer) {
            ix.regexes = Some((set, ids));
        }
    }
    Ok(index)
}

struct Builder {
    errors: Vec<ConfigError>,
    targets: HashMap<String, Arc<Target>>,
    rules: Vec<Rule>,
}

impl Builder {
    fn err(&mut self, file: &Path, path: String, message: String) {
        self.errors.push(ConfigError::new(file, path, message));
    }

    fn template(&mut self, file: &Path, path: String, text: &str) -> Option<Template> {
        match Template::parse(text) {
            Ok(t) => Some(t),
            Err(m) => {
                self.err(file, path, m);
                None
            }
        }
    }

    /// A template for a field whose literal values must already be valid.
    fn field_template(
        &mut self,
        file: &Path,
        path: String,
        text: &str,
        field: Field,
    ) -> Option<Template> {
        let t = self.template(file, path.clone(), text)?;
        if t.is_literal() && !sanitize::is_valid(field, text) {
            self.err(
                file,
                path,
                format!("{text:?} does not fit AWS's limits for this field"),
            );
        }
        Some(t)
    }

    fn target(&mut self, file: &Path, i: usize, t: file::TargetFile) {
        let at = |f: &str| format!("targets[{i}].{f}");
        if !valid_name(&t.name) {
            self.err(
                file,
                at("name"),
                format!(
                    "{:?} is not a valid name: use letters, digits, '-', '_' and '.'",
                    t.name
                ),
            );
        } else if let Some(other) = self.targets.get(&t.name) {
            let other = other.file.display().to_string();
            self.err(
                file,
                at("name"),
                format!("{:?} is already a target in {other}", t.name),
            );
        }
        let passthrough = match t.assertion.as_deref() {
            None | Some("mint") => false,
            Some("passthrough") => true,
            Some(other) => {
                self.err(
                    file,
                    at("assertion"),
                    format!("{other:?} is not one of mint, passthrough"),
                );
                false
            }
        };
        let assertion = if passthrough {
            if t.assertion_subject.is_some() {
                self.err(file, at("assertion_subject"), "a passthrough target shows the caller's own token; it has no assertion subject".into());
            }
            AssertionMode::Passthrough
        } else {
            let text = t
                .assertion_subject
                .clone()
                .unwrap_or_else(|| format!("{ASSERTION_SUBJECT_PREFIX}{}", t.name));
            match self.template(file, at("assertion_subject"), &text) {
                Some(tpl) => AssertionMode::Mint(tpl),
                None => return,
            }
        };
        let provided = [
            t.aws.is_some(),
            t.jwt.is_some(),
            t.gcp.is_some(),
            t.azure.is_some(),
        ];
        if provided.iter().filter(|p| **p).count() != 1 {
            self.err(
                file,
                format!("targets[{i}]"),
                "a target names exactly one provider: aws, jwt, gcp or azure".into(),
            );
            return;
        }
        let kind = if let Some(aws) = t.aws {
            if passthrough && (!aws.session_tags.is_empty() || aws.source_identity.is_some()) {
                self.err(file, at("aws"), "session tags and source identity travel in the minted assertion; a passthrough target cannot set them".into());
            }
            match self.aws_target(file, &at("aws"), aws) {
                Some(a) => TargetKind::Aws(a),
                None => return,
            }
        } else if let Some(jwt) = t.jwt {
            if passthrough {
                self.err(
                    file,
                    at("assertion"),
                    "jwt targets are minted by stsbridge; passthrough does not apply".into(),
                );
            }
            match self.jwt_target(file, &at("jwt"), jwt) {
                Some(j) => TargetKind::Jwt(j),
                None => return,
            }
        } else if let Some(gcp) = t.gcp {
            match self.gcp_target(file, &at("gcp"), gcp) {
                Some(g) => TargetKind::Gcp(g),
                None => return,
            }
        } else if let Some(azure) = t.azure {
            match self.azure_target(file, &at("azure"), azure) {
                Some(a) => TargetKind::Azure(a),
                None => return,
            }
        } else {
            return;
        };
        self.targets.insert(
            t.name.clone(),
            Arc::new(Target {
                name: t.name,
                file: file.to_path_buf(),
                assertion,
                kind,
            }),
        );
    }

    fn gcp_target(&mut self, file: &Path, at: &str, g: file::GcpTargetFile) -> Option<GcpTarget> {
        let before = self.errors.len();
        if !valid_gcp_audience(&g.audience) {
            self.err(
                file,
                format!("{at}.audience"),
                format!(
                    "{:?} is not a workload identity pool provider like \
                     //iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
                    g.audience
                ),
            );
        }
        if let Some(sa) = &g.service_account
            && !valid_service_account(sa)
        {
            self.err(
                file,
                format!("{at}.service_account"),
                format!("{sa:?} is not a service account email like name@project.iam.gserviceaccount.com"),
            );
        }
        for (j, d) in g.delegates.iter().enumerate() {
            if !valid_service_account(d) {
                self.err(
                    file,
                    format!("{at}.delegates[{j}]"),
                    format!("{d:?} is not a service account email"),
                );
            }
        }
        if g.service_account.is_none() && !g.delegates.is_empty() {
            self.err(
                file,
                format!("{at}.delegates"),
                "delegates need a service_account to impersonate".into(),
            );
        }
        let max = if g.allow_lifetime_extension {
            gcp::MAX_EXTENDED_LIFETIME
        } else {
            gcp::MAX_LIFETIME
        };
        let lifetime = match (g.lifetime, &g.service_account) {
            (Some(l), None) => {
                self.err(
                    file,
                    format!("{at}.lifetime"),
                    format!(
                        "{}: Google sets the lifetime of a federated token itself; a lifetime needs a service_account",
                        format_duration(l.0)
                    ),
                );
                l.0
            }
            (Some(l), Some(_)) => l.0,
            (None, _) => gcp::MAX_LIFETIME,
        };
        if lifetime < MIN_TOKEN_LIFETIME || lifetime > max {
            let why = if g.allow_lifetime_extension {
                String::new()
            } else {
                "; up to 12h needs the organization policy iam.allowServiceAccountCredentialLifetimeExtension \
                 and allow_lifetime_extension: true"
                    .to_owned()
            };
            self.err(
                file,
                format!("{at}.lifetime"),
                format!(
                    "{} is out of range: between {} and {}{why}",
                    format_duration(lifetime),
                    format_duration(MIN_TOKEN_LIFETIME),
                    format_duration(max)
                ),
            );
        }
        let mut scopes = if g.scopes.is_empty() {
            vec![gcp::CLOUD_PLATFORM.to_owned()]
        } else {
            g.scopes
        };
        for (j, scope) in scopes.iter().enumerate() {
            if !valid_scope_token(scope) {
                self.err(
                    file,
                    format!("{at}.scopes[{j}]"),
                    format!("{scope:?} is not an OAuth scope"),
                );
            }
        }
        scopes.sort();
        scopes.dedup();
        let assertion_audience = g
            .assertion_audience
            .unwrap_or_else(|| format!("https:{}", g.audience));
        if assertion_audience.is_empty() {
            self.err(
                file,
                format!("{at}.assertion_audience"),
                "must not be empty".into(),
            );
        }
        if self.errors.len() > before {
            return None;
        }
        Some(GcpTarget {
            audience: g.audience,
            assertion_audience,
            service_account: g.service_account,
            scopes,
            lifetime,
            delegates: g.delegates,
        })
    }

    fn azure_target(
        &mut self,
        file: &Path,
        at: &str,
        a: file::AzureTargetFile,
    ) -> Option<AzureTarget> {
        let before = self.errors.len();
        if ["common", "organizations", "consumers"]
            .contains(&a.tenant_id.to_ascii_lowercase().as_str())
        {
            self.err(
                file,
                format!("{at}.tenant_id"),
                format!("{:?} is a multi-tenant alias; the client-credentials grant needs the tenant's id or domain", a.tenant_id),
            );
        } else if !is_guid(&a.tenant_id) && !is_domain(&a.tenant_id) {
            self.err(
                file,
                format!("{at}.tenant_id"),
                format!(
                    "{:?} is neither a tenant GUID nor a domain like contoso.onmicrosoft.com",
                    a.tenant_id
                ),
            );
        }
        if !is_guid(&a.client_id) {
            self.err(
                file,
                format!("{at}.client_id"),
                format!("{:?} is not an application (client) id GUID", a.client_id),
            );
        }
        let resource = a.scope.strip_suffix("/.default");
        if resource.is_none_or(|r| r.is_empty()) || !valid_scope_token(&a.scope) {
            self.err(
                file,
                format!("{at}.scope"),
                format!("{:?} must be a resource followed by /.default, like https://storage.azure.com/.default", a.scope),
            );
        }
        if self.errors.len() > before {
            return None;
        }
        Some(AzureTarget {
            tenant_id: a.tenant_id,
            client_id: a.client_id,
            scope: a.scope,
        })
    }

    fn aws_target(&mut self, file: &Path, at: &str, a: file::AwsTargetFile) -> Option<AwsTarget> {
        let errors_before = self.errors.len();
        self.role_arn(file, format!("{at}.role_arn"), &a.role_arn);
        let duration = a.duration.map_or(DEFAULT_AWS_DURATION, |d| d.0);
        self.duration(
            file,
            format!("{at}.duration"),
            duration,
            MAX_DURATION,
            "a role session",
        );
        let session_name = self.field_template(
            file,
            format!("{at}.session_name"),
            a.session_name.as_deref().unwrap_or("{{ subject }}"),
            Field::AwsSessionName,
        );
        let source_identity = a.source_identity.as_deref().and_then(|s| {
            self.field_template(
                file,
                format!("{at}.source_identity"),
                s,
                Field::AwsSourceIdentity,
            )
        });
        let tags = self.tags(file, at, &a.session_tags, &a.transitive_tag_keys);
        let session_policy = a
            .session_policy_file
            .as_deref()
            .and_then(|p| self.policy(file, format!("{at}.session_policy_file"), p));
        let mut chain = Vec::new();
        for (j, hop) in a.chain.into_iter().enumerate() {
            let hat = format!("{at}.chain[{j}]");
            self.role_arn(file, format!("{hat}.role_arn"), &hop.role_arn);
            let duration = hop.duration.map_or(MAX_CHAINED_DURATION, |d| d.0);
            self.duration(
                file,
                format!("{hat}.duration"),
                duration,
                MAX_CHAINED_DURATION,
                "a chained (role-to-role) session",
            );
            chain.push(HopTarget {
                role_arn: hop.role_arn,
                duration,
                session_name: hop.session_name.as_deref().and_then(|s| {
                    self.field_template(
                        file,
                        format!("{hat}.session_name"),
                        s,
                        Field::AwsSessionName,
                    )
                }),
                external_id: hop.external_id.as_deref().and_then(|s| {
                    self.field_template(file, format!("{hat}.external_id"), s, Field::AwsExternalId)
                }),
                session_policy: hop
                    .session_policy_file
                    .as_deref()
                    .and_then(|p| self.policy(file, format!("{hat}.session_policy_file"), p)),
                tags: self.tags(file, &hat, &hop.session_tags, &hop.transitive_tag_keys),
                transitive_tag_keys: hop.transitive_tag_keys,
                source_identity: hop.source_identity.as_deref().and_then(|s| {
                    self.field_template(
                        file,
                        format!("{hat}.source_identity"),
                        s,
                        Field::AwsSourceIdentity,
                    )
                }),
            });
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(AwsTarget {
            role_arn: a.role_arn,
            duration,
            session_name: session_name?,
            source_identity,
            tags,
            transitive_tag_keys: a.transitive_tag_keys,
            session_policy,
            chain,
        })
    }

    fn role_arn(&mut self, file: &Path, path: String, arn: &str) {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "iam"
            && parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5]
                .strip_prefix("role/")
                .is_some_and(|r| !r.is_empty());
        if !ok {
            self.err(
                file,
                path,
                format!("{arn:?} is not an IAM role ARN like arn:aws:iam::111111111111:role/name"),
            );
        }
    }

    fn duration(&mut self, file: &Path, path: String, d: Duration, max: Duration, what: &str) {
        if d < MIN_DURATION || d > max {
            self.err(
                file,
                path,
                format!(
                    "{} is out of range: AWS allows {what} between {} and {}",
                    format_duration(d),
                    format_duration(MIN_DURATION),
                    format_duration(max)
                ),
            );
        }
    }

    fn tags(
        &mut self,
        file: &Path,
        at: &str,
        tags: &std::collections::BTreeMap<String, String>,
        transitive: &[String],
    ) -> Vec<(String, Template)> {
        if tags.len() > MAX_SESSION_TAGS {
            self.err(
                file,
                format!("{at}.session_tags"),
                format!("{} tags; AWS allows at most {MAX_SESSION_TAGS}", tags.len()),
            );
        }
        let mut lower = HashSet::new();
        let mut out = Vec::new();
        for (k, v) in tags {
            let path = format!("{at}.session_tags.{k}");
            if !sanitize::valid_aws_tag_key(k) {
                self.err(file, path.clone(), format!("{k:?} is not a valid AWS tag key (1-128 letters, digits, spaces or _.:/=+-@, not starting with aws:)"));
            }
            if !lower.insert(k.to_lowercase()) {
                self.err(
                    file,
                    path.clone(),
                    format!(
                        "{k:?} differs from another tag key only in case; AWS treats them as one"
                    ),
                );
            }
            if let Some(t) = self.template(file, path, v) {
                out.push((k.clone(), t));
            }
        }
        for (j, k) in transitive.iter().enumerate() {
            if !tags.contains_key(k) {
                self.err(
                    file,
                    format!("{at}.transitive_tag_keys[{j}]"),
                    format!("{k:?} is not one of this session's tags"),
                );
            }
        }
        out
    }

    fn policy(&mut self, file: &Path, path: String, policy: &Path) -> Option<Arc<str>> {
        let full = file.parent().unwrap_or(Path::new(".")).join(policy);
        let text = match std::fs::read_to_string(&full) {
            Ok(t) => t,
            Err(e) => {
                self.err(file, path, format!("cannot read {}: {e}", full.display()));
                return None;
            }
        };
        let value: Value = match serde_json::from_str(&text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                self.err(
                    file,
                    path,
                    format!("{} is not a JSON policy document", full.display()),
                );
                return None;
            }
        };
        let minified = value.to_string();
        if minified.chars().count() > MAX_SESSION_POLICY_CHARS {
            self.err(
                file,
                path,
                format!(
                    "{} is {} characters; AWS allows {MAX_SESSION_POLICY_CHARS}",
                    full.display(),
                    minified.chars().count()
                ),
            );
            return None;
        }
        Some(minified.into())
    }

    fn jwt_target(&mut self, file: &Path, at: &str, j: file::JwtTargetFile) -> Option<JwtTarget> {
        let before = self.errors.len();
        if j.audience.is_empty() {
            self.err(file, format!("{at}.audience"), "must not be empty".into());
        }
        for (k, s) in j.scopes.iter().enumerate() {
            if !valid_scope_token(s) {
                self.err(
                    file,
                    format!("{at}.scopes[{k}]"),
                    format!("{s:?} is not an OAuth scope token (printable ASCII, no spaces)"),
                );
            }
        }
        let lifetime = j.lifetime.map_or(DEFAULT_JWT_LIFETIME, |d| d.0);
        if lifetime < MIN_JWT_LIFETIME || lifetime > MAX_JWT_LIFETIME {
            self.err(
                file,
                format!("{at}.lifetime"),
                format!(
                    "{} is out of range; internal tokens live between {} and {}",
                    format_duration(lifetime),
                    format_duration(MIN_JWT_LIFETIME),
                    format_duration(MAX_JWT_LIFETIME)
                ),
            );
        }
        let subject = j
            .subject
            .as_deref()
            .map(|text| self.template(file, format!("{at}.subject"), text));
        if self.errors.len() > before {
            return None;
        }
        let mut scopes = j.scopes;
        scopes.sort();
        scopes.dedup();
        Some(JwtTarget {
            audience: j.audience,
            scopes,
            lifetime,
            subject: subject.flatten(),
        })
    }

    fn rule(&mut self, file: &Path, i: usize, r: file::RuleFile, trust_names: &HashSet<String>) {
        let at = |f: &str| format!("rules[{i}].{f}");
        let before = self.errors.len();
        if !valid_name(&r.name) {
            self.err(
                file,
                at("name"),
                format!("{:?} is not a valid name", r.name),
            );
        }
        if !trust_names.contains(&r.issuer) {
            let mut known: Vec<&String> = trust_names.iter().collect();
            known.sort();
            self.err(
                file,
                at("issuer"),
                format!("{:?} is not a trust entry (known: {known:?})", r.issuer),
            );
        }
        let (subject, conditions) =
            self.subject_and_claims(file, &format!("rules[{i}]"), r.subject.as_ref(), &r.claims);
        let client_certificate = match &r.client_certificate {
            None => None,
            Some(spec) => match compile_matcher(spec, true) {
                Ok(Matcher::NotOneOf(_)) => {
                    self.err(
                        file,
                        at("client_certificate"),
                        "not_one_of would admit any certificate; use a deny rule".into(),
                    );
                    None
                }
                Ok(m) => Some(m),
                Err(m) => {
                    self.err(file, at("client_certificate"), m);
                    None
                }
            },
        };
        let mut actors = Vec::with_capacity(r.actors.len());
        for (k, a) in r.actors.iter().enumerate() {
            let at = format!("rules[{i}].actors[{k}]");
            if !trust_names.contains(&a.issuer) {
                self.err(
                    file,
                    format!("{at}.issuer"),
                    format!("{:?} is not a trust entry", a.issuer),
                );
            }
            let (subject, conditions) =
                self.subject_and_claims(file, &at, a.subject.as_ref(), &a.claims);
            if let Some(subject) = subject {
                actors.push(ActorMatcher {
                    issuer: a.issuer.clone(),
                    subject,
                    conditions,
                });
            }
        }
        if r.deny.is_some() && !actors.is_empty() {
            self.err(
                file,
                at("actors"),
                "actors: applies to allow rules; a deny rule refuses whoever acts".into(),
            );
        }
        let mode = match r.mode.as_deref() {
            None | Some("enforce") => RuleMode::Enforce,
            Some("audit") => RuleMode::Audit,
            Some(other) => {
                self.err(
                    file,
                    at("mode"),
                    format!("{other:?} is not a mode; use enforce or audit"),
                );
                RuleMode::Enforce
            }
        };
        let (effect, list, field) = match (r.allow, r.deny) {
            (Some(a), None) => (Effect::Allow, a, "allow"),
            (None, Some(d)) => (Effect::Deny, d, "deny"),
            _ => {
                self.err(
                    file,
                    format!("rules[{i}]"),
                    "a rule lists either allow: [targets] or deny: [targets]".into(),
                );
                return;
            }
        };
        if list.is_empty() {
            self.err(
                file,
                at(field),
                "list at least one target, or \"*\" for every target".into(),
            );
        }
        let targets = if list.iter().any(|t| t == "*") {
            if list.len() > 1 {
                self.err(
                    file,
                    at(field),
                    "\"*\" already covers every target; list it alone".into(),
                );
            }
            None
        } else {
            for (k, t) in list.iter().enumerate() {
                if !self.targets.contains_key(t) {
                    self.err(
                        file,
                        format!("rules[{i}].{field}[{k}]"),
                        format!("{t:?} is not a target in any mapping file"),
                    );
                }
            }
            Some(list.into_iter().collect())
        };
        if self.errors.len() > before {
            return;
        }
        if let Some(subject) = subject {
            self.rules.push(Rule {
                name: r.name,
                file: file.to_path_buf(),
                issuer: r.issuer,
                subject,
                conditions,
                effect,
                targets,
                client_certificate,
                actors,
                mode,
            });
        }
    }

    /// A rule's (or an actor entry's) `subject:` and `claims:`, compiled; errors under `at`.
    fn subject_and_claims(
        &mut self,
        file: &Path,
        at: &str,
        subject: Option<&Yaml>,
        claims: &serde_yaml_ng::Mapping,
    ) -> (Option<SubjectMatcher>, Vec<Condition>) {
        let subject = match subject {
            None => {
                self.err(
                    file,
                    format!("{at}.subject"),
                    "missing: to match any subject, say so with subject: { any: true }".into(),
                );
                None
            }
            Some(spec) => match compile_subject(spec) {
                Ok(s) => Some(s),
                Err(m) => {
                    self.err(file, format!("{at}.subject"), m);
                    None
                }
            },
        };
        let mut conditions = Vec::new();
        for (k, spec) in claims {
            let Yaml::String(claim) = k else {
                self.err(
                    file,
                    format!("{at}.claims"),
                    format!("claim names are strings, found {k:?}"),
                );
                continue;
            };
            match Condition::compile(claim, spec) {
                Ok(c) => conditions.push(c),
                Err(m) => self.err(file, format!("{at}.claims.{claim}"), m),
            }
        }
        (subject, conditions)
    }
}

/// `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/ID`,
/// pool and provider ids being 4-32 lowercase letters, digits and hyphens.
fn valid_gcp_audience(audience: &str) -> bool {
    let Some(rest) = audience.strip_prefix("//iam.googleapis.com/projects/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let id = |s: &str| {
        (4..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    parts.len() == 7
        && !parts[0].is_empty()
        && parts[0].bytes().all(|b| b.is_ascii_digit())
        && parts[1] == "locations"
        && parts[2] == "global"
        && parts[3] == "workloadIdentityPools"
        && id(parts[4])
        && parts[5] == "providers"
        && id(parts[6])
}

/// `name@project.iam.gserviceaccount.com` and Google's other service account domains.
fn valid_service_account(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    (6..=63).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !local.starts_with('-')
        && domain.ends_with(".gserviceaccount.com")
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        })
}

/// An OAuth scope token (RFC 6749 §3.3): printable ASCII without spaces, quotes or backslashes.
fn valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

fn compile_subject(spec: &Yaml) -> Result<SubjectMatcher, String> {
    if let Yaml::Mapping(m) = spec
        && let Some(any) = m.get("any")
    {
        return match (any, m.len()) {
            (Yaml::Bool(true), 1) => Ok(SubjectMatcher::Any),
            _ => Err("write subject: { any: true } alone to match every subject".into()),
        };
    }
    match compile_matcher(spec, true)? {
        Matcher::NotOneOf(_) => {
            Err("not_one_of on the subject would match nearly everyone; use a deny rule".into())
        }
        m => Ok(SubjectMatcher::Is(m)),
    }
}

#[cfg(test)]
mod tests;
