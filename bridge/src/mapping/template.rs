//! Templates over claims: `gh-{{ claims.run_id }}`, `{{ subject }}`,
//! `{{ claims["kubernetes.io"].namespace }}`.
//!
//! Parsed once at load time, so a typo is a load error and rendering is a walk over literal and
//! variable parts. Variables: `subject`, `issuer` (the trust entry's name), `target`, and `claims.`
//! followed by `.name` or `["any key"]` segments for nested claims.

use std::fmt;

use serde_json::{Map, Value};

/// What a template reads when rendered.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// The token's `sub`.
    pub subject: &'a str,
    /// The trust entry's name.
    pub issuer: &'a str,
    /// The target's name.
    pub target: &'a str,
    /// The token's claims.
    pub claims: &'a Map<String, Value>,
}

/// Why a template could not be rendered for a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The token lacks a claim the template reads.
    #[error("the token has no {0} claim, which the target's templates read")]
    MissingClaim(String),
    /// The claim is an object, array or null.
    #[error("the token's {0} claim is not a string, number or boolean")]
    NotScalar(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    Subject,
    Issuer,
    Target,
    Claim { path: Vec<String>, display: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Template {
    /// Parses `text`; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("{text:?}: '{{{{' is never closed with '}}}}'"))?;
            parts.push(Part::Var(
                parse_var(after[..end].trim()).map_err(|m| format!("{text:?}: {m}"))?,
            ));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("{text:?}: '}}}}' without an opening '{{{{'"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template {
            source: text.to_owned(),
            parts,
        })
    }

    /// A template that is just literal text.
    pub fn literal(text: &str) -> Template {
        Template {
            source: text.to_owned(),
            parts: vec![Part::Literal(text.to_owned())],
        }
    }

    /// Whether it reads anything from the token.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The value for every caller of `target`, when the template reads nothing but literals and
    /// `{{ target }}`; `None` when it reads the token (subject, issuer or claims). Not sanitized.
    pub fn constant_for(&self, target: &str) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(Var::Target) => out.push_str(target),
                Part::Var(_) => return None,
            }
        }
        Some(out)
    }

    /// The literal start of every value rendered for `target` (literals and `{{ target }}` up to
    /// the first value read from the token), and whether that is the whole value. Not sanitized.
    pub fn prefix_for(&self, target: &str) -> (String, bool) {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(Var::Target) => out.push_str(target),
                Part::Var(_) => return (out, false),
            }
        }
        (out, true)
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The template with `{{ target }}` filled in and each value read from the token as `*`: the
    /// pattern every rendered value of `target` matches, as IAM's `StringLike` reads it. Not
    /// sanitized.
    pub fn wildcard_for(&self, target: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(Var::Target) => out.push_str(target),
                Part::Var(_) => out.push('*'),
            }
        }
        out
    }

    /// Renders against a token (not yet sanitized: callers apply the field's limits).
    pub fn render(&self, ctx: &RenderContext<'_>) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(Var::Subject) => out.push_str(ctx.subject),
                Part::Var(Var::Issuer) => out.push_str(ctx.issuer),
                Part::Var(Var::Target) => out.push_str(ctx.target),
                Part::Var(Var::Claim { path, display }) => {
                    let value = lookup(ctx.claims, path)
                        .ok_or_else(|| TemplateError::MissingClaim(display.clone()))?;
                    match scalar_text(value) {
                        Some(s) => out.push_str(&s),
                        None => return Err(TemplateError::NotScalar(display.clone())),
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Follows `path` into nested claims.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

/// A scalar claim as text; `None` for objects, arrays and null.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_var(expr: &str) -> Result<Var, String> {
    match expr {
        "subject" => return Ok(Var::Subject),
        "issuer" => return Ok(Var::Issuer),
        "target" => return Ok(Var::Target),
        _ => {}
    }
    let Some(path) = expr.strip_prefix("claims") else {
        return Err(format!(
            "unknown variable {expr:?}; use subject, issuer, target or claims.NAME"
        ));
    };
    let segments = parse_claim_path(path)?;
    Ok(Var::Claim {
        display: format!("claims{path}"),
        path: segments,
    })
}

/// Parses `.a.b["c.d"]` into segments.
pub fn parse_claim_path(mut path: &str) -> Result<Vec<String>, String> {
    let mut segments = Vec::new();
    while !path.is_empty() {
        if let Some(rest) = path.strip_prefix('.') {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let name = &rest[..end];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "bad claim name {name:?}; write claims[\"{name}\"] for other characters"
                ));
            }
            segments.push(name.to_owned());
            path = &rest[end..];
        } else if let Some(rest) = path.strip_prefix("[\"") {
            let end = rest.find("\"]").ok_or("a [\" is never closed with \"]")?;
            segments.push(rest[..end].to_owned());
            path = &rest[end + 2..];
        } else {
            return Err(format!(
                "expected .name or [\"name\"] after claims, found {path:?}"
            ));
        }
    }
    if segments.is_empty() {
        return Err("claims needs a claim name, like claims.repository".into());
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(claims: &Map<String, Value>) -> RenderContext<'_> {
        RenderContext {
            subject: "repo:acme/x",
            issuer: "github",
            target: "deploy",
            claims,
        }
    }

    #[test]
    fn renders_literals_variables_and_nested_claims() {
        let claims = json!({"run_id": 42, "kubernetes.io": {"namespace": "payments"}, "ok": true});
        let claims = claims.as_object().unwrap();
        let t = Template::parse(r#"gh-{{ claims.run_id }}-{{claims["kubernetes.io"].namespace}}-{{ subject }}@{{issuer}}/{{ target }}/{{ claims.ok }}"#).unwrap();
        assert_eq!(
            t.render(&ctx(claims)).unwrap(),
            "gh-42-payments-repo:acme/x@github/deploy/true"
        );
        assert!(!t.is_literal());
        assert!(Template::parse("plain").unwrap().is_literal());
    }

    #[test]
    fn constant_and_wildcard_forms_for_a_target() {
        let t = Template::parse("target:{{ target }}").unwrap();
        assert_eq!(t.constant_for("deploy").as_deref(), Some("target:deploy"));
        assert_eq!(t.wildcard_for("deploy"), "target:deploy");
        let t = Template::parse("{{ issuer }}/{{ target }}/{{ claims.team }}").unwrap();
        assert_eq!(t.constant_for("deploy"), None);
        assert_eq!(t.wildcard_for("deploy"), "*/deploy/*");
    }

    #[test]
    fn missing_and_non_scalar_claims_are_errors() {
        let claims = json!({"groups": ["a"]});
        let claims = claims.as_object().unwrap();
        let t = Template::parse("{{ claims.run_id }}").unwrap();
        assert_eq!(
            t.render(&ctx(claims)),
            Err(TemplateError::MissingClaim("claims.run_id".into()))
        );
        let t = Template::parse("{{ claims.groups }}").unwrap();
        assert_eq!(
            t.render(&ctx(claims)),
            Err(TemplateError::NotScalar("claims.groups".into()))
        );
    }

    #[test]
    fn syntax_errors_are_caught_at_load() {
        for bad in [
            "{{ subject",
            "x }}",
            "{{ nope }}",
            "{{ claims }}",
            "{{ claims.a b }}",
            "{{ claims[\"a }}",
            "{{ claims.a..b }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
