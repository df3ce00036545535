//! The decision: allow when an enforced allow rule that matches the caller lists the target (and,
//! for a delegated request, the actor) and no enforced deny rule does; audit-mode rules are only
//! watched.

use super::*;

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

impl Mappings {
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

    /// Whether `token` (from a caller whose client certificate has `client_names`) is allowed
    /// the built-in target `builtin` ([`BUILTIN_TARGETS`]): by the first enforced allow rule that
    /// names it, unless an enforced deny rule that names it (or `"*"`) matches. `"*"` never
    /// grants a built-in target.
    pub fn permits(
        &self,
        token: &ValidatedToken,
        client_names: &[String],
        builtin: &str,
    ) -> Result<&Rule, Option<&Rule>> {
        let mut allow = None;
        for i in self.candidates(&token.trust, &token.subject) {
            let rule = &self.rules[i];
            if rule.mode == RuleMode::Audit
                || !rule.covers(builtin)
                || !rule.conditions_pass(&token.claims)
                || rule.client_check(client_names).is_some_and(|c| !c.pass)
            {
                continue;
            }
            match rule.effect {
                Effect::Deny => return Err(Some(rule)),
                Effect::Allow if rule.names(builtin) => {
                    allow.get_or_insert(rule);
                }
                Effect::Allow => {}
            }
        }
        allow.ok_or(None)
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
}
