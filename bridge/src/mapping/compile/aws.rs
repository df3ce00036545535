//! AWS targets: role ARNs, durations, session tags, session policies, chained hops.

use super::*;

impl Builder {
    pub(super) fn aws_target(
        &mut self,
        file: &Path,
        at: &str,
        a: file::AwsTargetFile,
    ) -> Option<AwsTarget> {
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
                role_arn: hop.role_arn.into(),
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
            role_arn: a.role_arn.into(),
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
        if !stsbridge_providers::aws::valid_role_arn(arn) {
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
}
