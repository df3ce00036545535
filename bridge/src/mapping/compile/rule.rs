//! Rules: issuer, subject, claim conditions, client certificate, actors, targets, mode.

use super::*;

impl Builder {
    pub(in crate::mapping) fn rule(
        &mut self,
        file: &Path,
        i: usize,
        r: file::RuleFile,
        trust_names: &HashSet<String>,
    ) {
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
        let mut certificate = |field: &str, spec: Option<&Yaml>| match spec {
            None => None,
            Some(spec) => match compile_matcher(spec, true) {
                Ok(Matcher::NotOneOf(_)) => {
                    self.err(
                        file,
                        at(field),
                        "not_one_of would admit any certificate; use a deny rule".into(),
                    );
                    None
                }
                Ok(m) => Some(m),
                Err(m) => {
                    self.err(file, at(field), m);
                    None
                }
            },
        };
        let client_certificate = certificate("client_certificate", r.client_certificate.as_ref());
        let client_spiffe_id = certificate("client_spiffe_id", r.client_spiffe_id.as_ref());
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
                if t.starts_with(BUILTIN_PREFIX) {
                    if !BUILTIN_TARGETS.contains(&t.as_str()) {
                        self.err(
                            file,
                            format!("rules[{i}].{field}[{k}]"),
                            format!(
                                "{t:?} is not a built-in target (names starting {BUILTIN_PREFIX} are reserved): use {}",
                                BUILTIN_TARGETS.join(" or ")
                            ),
                        );
                    }
                } else if !self.targets.contains_key(t) && !self.declared.contains(t) {
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
            // Named by their name as well as their index: the index moves as files are edited.
            if valid_name(&r.name) {
                for e in &mut self.errors[before..] {
                    e.message = format!("rule {:?}: {}", r.name, e.message);
                }
            }
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
                client_spiffe_id,
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
