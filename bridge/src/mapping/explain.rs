//! Explanations: every rule of the caller's issuer that mentions a target, with each test's
//! outcome, for `stsbridge explain`, the mapping tests and `explain_denials`.

use super::*;

impl Mappings {
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
                for (claim, check, m) in [
                    (
                        "client certificate",
                        rule.dns_check(client_names),
                        &rule.client_certificate,
                    ),
                    (
                        "client SPIFFE ID",
                        rule.spiffe_check(client_names),
                        &rule.client_spiffe_id,
                    ),
                ] {
                    if let (Some(check), Some(m)) = (check, m) {
                        conditions.push(ConditionExplanation {
                            claim: claim.into(),
                            test: m.describe(),
                            check,
                        });
                    }
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
    pub fn report(&self, subject: &str) -> String {
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

/// Most rules a caller's denial explains.
const MAX_EXPLAINED_RULES: usize = 5;

impl Mappings {
    /// For a caller refused because no allow rule matched (`explain_denials`): each enforced
    /// allow rule of the caller's issuer for the target and the tests its token failed. The rules
    /// are those of the caller's own trust entry; the token's values are not repeated.
    pub fn denial_reasons(
        &self,
        token: &ValidatedToken,
        client_names: &[String],
        target: &str,
    ) -> Vec<String> {
        let rules: Vec<_> = self
            .explain_for(token, client_names, target)
            .into_iter()
            .filter(|r| r.effect == Effect::Allow && r.mode == RuleMode::Enforce)
            .collect();
        let mut out: Vec<String> = rules
            .iter()
            .take(MAX_EXPLAINED_RULES)
            .map(|r| format!("rule {}: failed {}", r.rule, r.failures().join("; ")))
            .collect();
        if rules.len() > MAX_EXPLAINED_RULES {
            out.push(format!(
                "and {} more rule(s)",
                rules.len() - MAX_EXPLAINED_RULES
            ));
        }
        if out.is_empty() {
            out.push(format!("no rule of this issuer allows {target}"));
        }
        out
    }
}
