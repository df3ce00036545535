//! Compiling mapping files: each target and rule as written becomes the compiled model, with
//! every problem collected (file, field path, value) rather than the first. Rooms: `aws`, `gcp`,
//! `azure`, `jwt` (one per target kind) and `rule`.

use super::*;

mod aws;
mod azure;
mod gcp;
mod jwt;
mod rule;

pub(super) struct Builder {
    pub(super) errors: Vec<ConfigError>,
    pub(super) targets: HashMap<String, Arc<Target>>,
    pub(super) rules: Vec<Rule>,
    /// Every target name the files declare, compiled or not: a rule naming a target that has
    /// errors of its own is not told again that it "is not a target".
    pub(super) declared: Arc<HashSet<String>>,
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

    pub(super) fn target(&mut self, file: &Path, i: usize, t: file::TargetFile) {
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
                name: t.name.into(),
                file: file.to_path_buf(),
                assertion,
                kind,
                grants: Default::default(),
            }),
        );
    }
}

/// An OAuth scope token (RFC 6749 §3.3): printable ASCII without spaces, quotes or backslashes.
pub(super) fn valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

pub(super) fn compile_subject(spec: &Yaml) -> Result<SubjectMatcher, String> {
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
