//! IAM's evaluation of a policy document, as far as `terraform/`'s modules write them: which
//! statements allow one request (a principal, an action, the request's condition keys). Built
//! from IAM's documented evaluation logic: every element of a statement must match, every
//! condition operator and key of its `Condition` must hold, a key with several values holds when
//! one of them matches. An element, effect or condition operator this evaluator does not know
//! fails the test instead of being guessed at, so a module that starts writing one must bring
//! the evaluator along.

use std::collections::BTreeMap;

use serde_json::Value;

/// One request to IAM.
pub struct Request<'a> {
    /// The principal type of the statement's `Principal` (`Federated`, `AWS`).
    pub principal_type: &'a str,
    /// The principal (an OIDC provider's ARN, a role's ARN).
    pub principal: &'a str,
    /// The action (`sts:AssumeRoleWithWebIdentity`, `sts:TagSession`...).
    pub action: &'a str,
    /// The condition keys of the request and their values (`HOST:sub`, `sts:ExternalId`...).
    pub context: BTreeMap<String, String>,
}

/// The values of an element that may be one string or a list.
pub fn values(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether `text` matches an IAM pattern (`*` any run of characters, `?` one character).
pub fn like(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // matched[j]: the pattern read so far matches the first j characters of text.
    let mut matched = vec![false; t.len() + 1];
    matched[0] = true;
    for c in p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            next[j] = match c {
                '*' => matched[j] || (j > 0 && next[j - 1]),
                '?' => j > 0 && matched[j - 1],
                c => j > 0 && matched[j - 1] && t[j - 1] == c,
            };
        }
        matched = next;
    }
    matched[t.len()]
}

/// Whether one condition operator holds for `key`'s patterns `wanted` and the request's value.
fn holds(operator: &str, wanted: &[&str], value: Option<&str>) -> bool {
    let any =
        |f: &dyn Fn(&str, &str) -> bool| value.is_some_and(|v| wanted.iter().any(|w| f(w, v)));
    match operator {
        "StringEquals" => any(&|w, v| w == v),
        "StringNotEquals" => !any(&|w, v| w == v),
        "StringEqualsIgnoreCase" => any(&|w, v| w.to_lowercase() == v.to_lowercase()),
        "StringNotEqualsIgnoreCase" => !any(&|w, v| w.to_lowercase() == v.to_lowercase()),
        "StringLike" => any(&|w, v| like(w, v)),
        "StringNotLike" => !any(&|w, v| like(w, v)),
        other => panic!(
            "condition operator {other} is not known to tests/src/iam.rs: teach it IAM's meaning first"
        ),
    }
}

/// The statements of `policy` that allow `request`, by `Sid` (or index). Panics on a `Deny`
/// statement or on an element it does not know (`NotPrincipal`, `NotAction`...).
pub fn allowing(policy: &Value, request: &Request<'_>) -> Vec<String> {
    let statements = policy["Statement"]
        .as_array()
        .unwrap_or_else(|| panic!("a policy without a Statement list: {policy}"));
    let mut allowing = Vec::new();
    for (i, s) in statements.iter().enumerate() {
        let statement = s
            .as_object()
            .unwrap_or_else(|| panic!("a statement that is not an object: {s}"));
        for element in statement.keys() {
            assert!(
                ["Sid", "Effect", "Principal", "Action", "Condition"].contains(&element.as_str()),
                "statement element {element} is not known to tests/src/iam.rs: {s}"
            );
        }
        assert_eq!(
            s["Effect"], "Allow",
            "tests/src/iam.rs evaluates Allow statements only: {s}"
        );
        let principal = s["Principal"]
            .as_object()
            .unwrap_or_else(|| panic!("a Principal that is not an object: {s}"));
        let principal_matches = principal.iter().any(|(kind, who)| {
            kind == request.principal_type
                && values(who)
                    .iter()
                    .any(|p| *p == "*" || *p == request.principal)
        });
        let action_matches = values(&s["Action"])
            .iter()
            .any(|a| like(&a.to_lowercase(), &request.action.to_lowercase()));
        let conditions_hold = match &s["Condition"] {
            Value::Null => true,
            Value::Object(operators) => operators.iter().all(|(operator, keys)| {
                let keys = keys
                    .as_object()
                    .unwrap_or_else(|| panic!("condition {operator} is not an object: {s}"));
                keys.iter().all(|(key, wanted)| {
                    holds(
                        operator,
                        &values(wanted),
                        request.context.get(key).map(String::as_str),
                    )
                })
            }),
            other => panic!("a Condition that is not an object: {other}"),
        };
        if principal_matches && action_matches && conditions_hold {
            allowing.push(
                s["Sid"]
                    .as_str()
                    .map_or_else(|| i.to_string(), str::to_owned),
            );
        }
    }
    allowing
}

/// Strings one edit away from `value` that an exact match must refuse: one character changed
/// (first, middle, last), a proper prefix and a proper suffix of it, it with a character
/// appended or prepended (so that it is itself a prefix or a suffix), and its upper case.
pub fn near_misses(value: &str) -> Vec<String> {
    let chars: Vec<char> = value.chars().collect();
    assert!(chars.len() >= 2, "{value:?} is too short to mutate");
    let changed = |at: usize| {
        let mut c = chars.clone();
        c[at] = if c[at] == 'x' { 'y' } else { 'x' };
        c.into_iter().collect::<String>()
    };
    let mut out = vec![
        changed(0),
        changed(chars.len() / 2),
        changed(chars.len() - 1),
        chars[..chars.len() - 1].iter().collect(),
        chars[1..].iter().collect(),
        format!("{value}x"),
        format!("x{value}"),
        value.to_uppercase(),
    ];
    out.retain(|m| m != value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_iam_documents() {
        assert!(like("target:*", "target:a"));
        assert!(like("*", ""));
        assert!(like("a?c", "abc"));
        assert!(!like("a?c", "ac"));
        assert!(!like("target:a", "target:ab"));
        assert!(like("sts:*", "sts:TagSession"));
    }

    #[test]
    fn near_misses_never_include_the_value() {
        let m = near_misses("target:x");
        assert!(!m.contains(&"target:x".to_owned()));
        assert!(m.contains(&"target:".to_owned()) && m.contains(&"arget:x".to_owned()));
    }
}
