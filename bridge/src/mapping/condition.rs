//! Conditions on claims and on the subject.
//!
//! Operators: exact (a plain value), `glob`, `regex` (anchored; the `regex` crate is linear-time, so
//! a hostile claim cannot make matching slow), `one_of`, `not_one_of`, `contains` (array claims), and
//! `exists`. A claim the token lacks fails every condition except `exists: false`.

use globset::{Glob, GlobMatcher};
use regex::Regex;
use serde_json::{Map, Value};
use serde_yaml_ng::Value as Yaml;

use super::template::{lookup, scalar_text};

/// Largest compiled regex: a mapping file must not be able to take the service's memory.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// A test on one string.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal to.
    Exact(String),
    /// Matches a glob (`*` matches any run of characters, `/` included).
    Glob(String, GlobTest),
    /// Matches an anchored regex.
    Regex(String, Regex),
    /// Equal to one of.
    OneOf(Vec<String>),
    /// Equal to none of.
    NotOneOf(Vec<String>),
    /// An array claim holds this value (a string claim equals it).
    Contains(String),
    /// The claim is present (`true`) or absent (`false`).
    Exists(bool),
}

/// A compiled glob. The common shapes (`prefix*`, `*suffix`) are string tests; anything else is
/// compiled by `globset`. Compiling thousands of partner rules stays cheap either way.
#[derive(Debug, Clone)]
pub enum GlobTest {
    /// `prefix*`.
    Prefix(String),
    /// `*suffix`.
    Suffix(String),
    /// Any other glob.
    Compiled(GlobMatcher),
}

impl GlobTest {
    /// Compiles `pattern`, or says why it is not a glob.
    pub fn new(pattern: &str) -> Result<GlobTest, String> {
        let glob = Glob::new(pattern).map_err(|e| format!("bad glob {pattern:?}: {e}"))?;
        let special = |c: char| matches!(c, '?' | '[' | ']' | '{' | '}' | '\\' | '*');
        if let Some(prefix) = pattern.strip_suffix('*')
            && !prefix.contains(special)
        {
            return Ok(GlobTest::Prefix(prefix.to_owned()));
        }
        if let Some(suffix) = pattern.strip_prefix('*')
            && !suffix.contains(special)
        {
            return Ok(GlobTest::Suffix(suffix.to_owned()));
        }
        Ok(GlobTest::Compiled(glob.compile_matcher()))
    }

    /// Whether `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        match self {
            GlobTest::Prefix(p) => s.starts_with(p.as_str()),
            GlobTest::Suffix(x) => s.ends_with(x.as_str()),
            GlobTest::Compiled(g) => g.is_match(s),
        }
    }
}

/// The outcome of one condition, with what was seen (for `explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Whether it passed.
    pub pass: bool,
    /// The claim's value as seen, when present.
    pub actual: Option<String>,
}

impl Matcher {
    /// Whether a scalar string passes.
    pub fn matches_str(&self, s: &str) -> bool {
        match self {
            Matcher::Exact(v) | Matcher::Contains(v) => v == s,
            Matcher::Glob(_, g) => g.is_match(s),
            Matcher::Regex(_, r) => r.is_match(s),
            Matcher::OneOf(vs) => vs.iter().any(|v| v == s),
            Matcher::NotOneOf(vs) => !vs.iter().any(|v| v == s),
            Matcher::Exists(e) => *e,
        }
    }

    /// Checks a claim value (`None` when the token lacks it).
    pub fn check(&self, value: Option<&Value>) -> Check {
        let Some(value) = value else {
            return Check {
                pass: matches!(self, Matcher::Exists(false)),
                actual: None,
            };
        };
        let actual = Some(short(&display(value)));
        let pass = match (self, value) {
            (Matcher::Exists(e), _) => *e,
            (Matcher::Contains(want), Value::Array(items)) => items
                .iter()
                .any(|i| scalar_text(i).is_some_and(|s| &s == want)),
            (_, v) => scalar_text(v).is_some_and(|s| self.matches_str(&s)),
        };
        Check { pass, actual }
    }

    /// How the condition reads in `explain` output.
    pub fn describe(&self) -> String {
        match self {
            Matcher::Exact(v) => format!("== {v:?}"),
            Matcher::Glob(p, _) => format!("glob {p:?}"),
            Matcher::Regex(p, _) => format!("regex {p:?}"),
            Matcher::OneOf(vs) => format!("one of {vs:?}"),
            Matcher::NotOneOf(vs) => format!("not one of {vs:?}"),
            Matcher::Contains(v) => format!("contains {v:?}"),
            Matcher::Exists(e) => format!("exists: {e}"),
        }
    }
}

fn display(v: &Value) -> String {
    scalar_text(v).unwrap_or_else(|| v.to_string())
}

fn short(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

/// A condition on one claim.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The claim as written in the mapping file.
    pub claim: String,
    path: Vec<String>,
    /// The test.
    pub matcher: Matcher,
}

impl Condition {
    /// Compiles `claim: spec` from a rule's `claims:` map. `claim` names a top-level claim, or, when
    /// it starts with `/`, a JSON pointer (RFC 6901) into nested claims:
    /// `/kubernetes.io/namespace`.
    pub fn compile(claim: &str, spec: &Yaml) -> Result<Condition, String> {
        let path = match claim.strip_prefix('/') {
            Some(pointer) => pointer
                .split('/')
                .map(|s| {
                    if s.is_empty() {
                        Err(format!("{claim:?} has an empty segment"))
                    } else {
                        Ok(s.replace("~1", "/").replace("~0", "~"))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
            None if claim.is_empty() => return Err("empty claim name".into()),
            None => vec![claim.to_owned()],
        };
        Ok(Condition {
            claim: claim.to_owned(),
            path,
            matcher: compile_matcher(spec, false)?,
        })
    }

    /// Checks the condition against a token's claims.
    pub fn check(&self, claims: &Map<String, Value>) -> Check {
        self.matcher.check(lookup(claims, &self.path))
    }
}

/// Compiles a condition value: a scalar (exact) or a one-key map naming the operator.
/// `for_subject` refuses operators that make no sense on `sub` (`contains`, `exists`).
pub fn compile_matcher(spec: &Yaml, for_subject: bool) -> Result<Matcher, String> {
    if let Some(s) = yaml_scalar(spec) {
        return Ok(Matcher::Exact(s));
    }
    let Yaml::Mapping(map) = spec else {
        return Err(
            "expected a value or one of {glob, regex, one_of, not_one_of, contains, exists}".into(),
        );
    };
    if map.len() != 1 {
        return Err(format!(
            "a condition has exactly one operator, found {}",
            map.len()
        ));
    }
    let Some((Yaml::String(op), arg)) = map.iter().next() else {
        return Err("the operator must be a name".into());
    };
    match op.as_str() {
        "glob" => {
            let p = yaml_scalar(arg).ok_or("glob takes a pattern string")?;
            let g = GlobTest::new(&p)?;
            Ok(Matcher::Glob(p, g))
        }
        "regex" => {
            let p = yaml_scalar(arg).ok_or("regex takes a pattern string")?;
            let r = regex::RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(MAX_REGEX_BYTES)
                .build()
                .map_err(|e| format!("bad regex {p:?}: {e}"))?;
            Ok(Matcher::Regex(p, r))
        }
        "one_of" => Ok(Matcher::OneOf(yaml_list(arg, "one_of")?)),
        "not_one_of" => Ok(Matcher::NotOneOf(yaml_list(arg, "not_one_of")?)),
        "contains" if !for_subject => Ok(Matcher::Contains(
            yaml_scalar(arg).ok_or("contains takes one value")?,
        )),
        "exists" if !for_subject => match arg {
            Yaml::Bool(b) => Ok(Matcher::Exists(*b)),
            _ => Err("exists takes true or false".into()),
        },
        other => Err(format!(
            "unknown operator {other:?}; use {}",
            if for_subject {
                "glob, regex, one_of or any"
            } else {
                "glob, regex, one_of, not_one_of, contains or exists"
            }
        )),
    }
}

/// A YAML scalar as text.
pub fn yaml_scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn yaml_list(v: &Yaml, op: &str) -> Result<Vec<String>, String> {
    let Yaml::Sequence(items) = v else {
        return Err(format!("{op} takes a list"));
    };
    if items.is_empty() {
        return Err(format!("{op} needs at least one value"));
    }
    items
        .iter()
        .map(|i| yaml_scalar(i).ok_or_else(|| format!("{op} takes a list of values")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(claim: &str, yaml: &str) -> Condition {
        Condition::compile(claim, &serde_yaml_ng::from_str(yaml).unwrap()).unwrap()
    }

    fn claims() -> Map<String, Value> {
        json!({
            "environment": "prod", "run_id": 42, "groups": ["dev", "ops"],
            "kubernetes.io": {"namespace": "payments"},
            "job_workflow_ref": "acme/workflows/.github/workflows/deploy.yml@refs/heads/main"
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn every_operator_passes_and_fails() {
        let c = claims();
        let cases = [
            ("environment", "prod", true),
            ("environment", "dev", false),
            ("run_id", "42", true),
            (
                "job_workflow_ref",
                "{glob: \"acme/workflows/.github/workflows/deploy.yml@*\"}",
                true,
            ),
            ("job_workflow_ref", "{glob: \"evil/*\"}", false),
            ("environment", "{regex: \"pr.d\"}", true),
            ("environment", "{regex: \"pr\"}", false),
            ("environment", "{one_of: [dev, prod]}", true),
            ("environment", "{one_of: [dev]}", false),
            ("environment", "{not_one_of: [dev]}", true),
            ("environment", "{not_one_of: [prod]}", false),
            ("groups", "{contains: ops}", true),
            ("groups", "{contains: admin}", false),
            ("environment", "{exists: true}", true),
            ("absent", "{exists: false}", true),
            ("absent", "{exists: true}", false),
            ("absent", "{not_one_of: [x]}", false),
            ("/kubernetes.io/namespace", "payments", true),
            ("groups", "dev", false),
        ];
        for (claim, spec, want) in cases {
            assert_eq!(cond(claim, spec).check(&c).pass, want, "{claim}: {spec}");
        }
    }

    #[test]
    fn regexes_are_anchored() {
        let c = json!({"sub": "xadminx"}).as_object().unwrap().clone();
        assert!(!cond("sub", "{regex: admin}").check(&c).pass);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, want) in [
            ("{glob: \"[\"}", "bad glob"),
            ("{regex: \"(\"}", "bad regex"),
            ("{one_of: []}", "at least one"),
            ("{frobnicate: 1}", "unknown operator"),
            ("{glob: a, regex: b}", "exactly one operator"),
            ("[a, b]", "expected a value"),
        ] {
            let err = Condition::compile("c", &serde_yaml_ng::from_str(spec).unwrap()).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }
}
