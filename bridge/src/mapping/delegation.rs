//! Delegation (RFC 8693 `act`): which prior chain a subject token may bring, which actors it
//! allows (`may_act`), and the `act` claim of a minted token.
//!
//! An issuer is trusted for its own `iss` only. A chain it writes into its own token names other
//! parties' identities, so it is kept only for tokens stsbridge minted itself or from an issuer
//! whose trust entry says `accept_act: true`, and then only as objects with a string `sub` (and
//! optionally `iss`) at every level: nothing else an issuer put there is signed by stsbridge.

use serde_json::{Map, Value};

use crate::token::ValidatedToken;

use super::{MAX_DELEGATION_DEPTH, RenderError};

/// What became of the subject token's own `act` claim.
#[derive(Debug, Clone, PartialEq)]
pub enum PriorAct {
    /// The token has none.
    Absent,
    /// Kept, reduced to `sub` / `iss` / `act` at every level.
    Kept(Value),
    /// The token has one, but its issuer is not trusted to assert chains: it is not carried on.
    Dropped,
}

impl PriorAct {
    /// For the audit event: `kept`, `dropped`, or `None` when the token had no `act`.
    pub fn audit_label(&self) -> Option<&'static str> {
        match self {
            PriorAct::Absent => None,
            PriorAct::Kept(_) => Some("kept"),
            PriorAct::Dropped => Some("dropped"),
        }
    }

    /// The kept chain, if any.
    pub fn chain(&self) -> Option<&Value> {
        match self {
            PriorAct::Kept(v) => Some(v),
            PriorAct::Absent | PriorAct::Dropped => None,
        }
    }
}

/// Why a prior chain that would be kept was refused (400 `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A level is not a JSON object.
    #[error("the subject token's act claim: level {0} is not an object")]
    NotObject(usize),
    /// A level has no non-empty string `sub`.
    #[error("the subject token's act claim: level {0} has no string sub")]
    NoSubject(usize),
    /// A level's `iss` is not a string.
    #[error("the subject token's act claim: level {0} has an iss that is not a string")]
    BadIssuer(usize),
    /// Deeper than [`MAX_DELEGATION_DEPTH`].
    #[error("the subject token's act claim is deeper than {MAX_DELEGATION_DEPTH} actors")]
    TooDeep,
}

/// The prior chain of a subject token: kept (normalized) when `trusted` (stsbridge minted the
/// token, or its issuer has `accept_act: true`), else dropped. A chain that would be kept but is
/// malformed is an error, never silently repaired.
pub fn prior_chain(claims: &Map<String, Value>, trusted: bool) -> Result<PriorAct, ChainError> {
    let Some(act) = claims.get("act") else {
        return Ok(PriorAct::Absent);
    };
    if !trusted {
        return Ok(PriorAct::Dropped);
    }
    Ok(PriorAct::Kept(normalize(act, 1)?))
}

fn normalize(level: &Value, depth: usize) -> Result<Value, ChainError> {
    if depth > MAX_DELEGATION_DEPTH {
        return Err(ChainError::TooDeep);
    }
    let Value::Object(object) = level else {
        return Err(ChainError::NotObject(depth));
    };
    let mut out = Map::new();
    match object.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => {
            out.insert("sub".into(), Value::String(s.clone()));
        }
        _ => return Err(ChainError::NoSubject(depth)),
    }
    match object.get("iss") {
        None => {}
        Some(Value::String(s)) => {
            out.insert("iss".into(), Value::String(s.clone()));
        }
        Some(_) => return Err(ChainError::BadIssuer(depth)),
    }
    if let Some(inner) = object.get("act") {
        out.insert("act".into(), normalize(inner, depth + 1)?);
    }
    Ok(Value::Object(out))
}

/// Whether the subject token's `may_act` (RFC 8693 §4.4), if it has one, names `actor`: every
/// member must equal the actor's (`iss` is the actor's issuer URL, `sub` its subject, any other
/// member the actor's claim of that name). A `may_act` that is not a non-empty object names no
/// one.
pub fn may_act_allows(subject: &Map<String, Value>, actor: &ValidatedToken) -> bool {
    let Some(may_act) = subject.get("may_act") else {
        return true;
    };
    let Value::Object(members) = may_act else {
        return false;
    };
    !members.is_empty()
        && members.iter().all(|(name, want)| match name.as_str() {
            "iss" => want.as_str() == Some(actor.issuer.as_str()),
            "sub" => want.as_str() == Some(actor.subject.as_str()),
            other => actor.claims.get(other) == Some(want),
        })
}

/// The `act` claim of a minted token: the new actor, wrapping the kept prior chain.
pub fn delegation(
    prior: &PriorAct,
    actor: Option<&ValidatedToken>,
) -> Result<Option<Value>, RenderError> {
    let prior = prior.chain().cloned();
    let act = match actor {
        None => prior,
        Some(a) => {
            let mut act = Map::new();
            act.insert("sub".into(), Value::String(a.subject.clone()));
            act.insert("iss".into(), Value::String(a.issuer.clone()));
            if let Some(p) = prior {
                act.insert("act".into(), p);
            }
            Some(Value::Object(act))
        }
    };
    let mut depth = 0;
    let mut cursor = act.as_ref();
    while let Some(a) = cursor {
        depth += 1;
        cursor = a.get("act");
    }
    if depth > MAX_DELEGATION_DEPTH {
        return Err(RenderError::DelegationTooDeep);
    }
    Ok(act)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn actor(iss: &str, sub: &str, extra: Value) -> ValidatedToken {
        let mut c = claims(extra);
        c.insert("sub".into(), json!(sub));
        ValidatedToken {
            trust: "ci".into(),
            issuer: iss.into(),
            subject: sub.into(),
            claims: c,
            jti: None,
            expires_at: 0,
        }
    }

    #[test]
    fn an_untrusted_chain_is_dropped_and_a_trusted_one_reduced() {
        let c = claims(json!({ "act": { "sub": "a", "iss": "https://x", "admin": true } }));
        assert_eq!(prior_chain(&c, false), Ok(PriorAct::Dropped));
        assert_eq!(
            prior_chain(&c, true),
            Ok(PriorAct::Kept(json!({ "sub": "a", "iss": "https://x" })))
        );
        assert_eq!(prior_chain(&claims(json!({})), false), Ok(PriorAct::Absent));
    }

    #[test]
    fn a_malformed_trusted_chain_is_refused() {
        for (act, err) in [
            (json!("a"), ChainError::NotObject(1)),
            (json!({ "iss": "x" }), ChainError::NoSubject(1)),
            (json!({ "sub": "" }), ChainError::NoSubject(1)),
            (json!({ "sub": "a", "iss": 1 }), ChainError::BadIssuer(1)),
            (json!({ "sub": "a", "act": [1] }), ChainError::NotObject(2)),
            (
                json!({ "sub": "1", "act": { "sub": "2", "act": { "sub": "3", "act": { "sub": "4", "act": { "sub": "5" } } } } }),
                ChainError::TooDeep,
            ),
        ] {
            assert_eq!(prior_chain(&claims(json!({ "act": act })), true), Err(err));
        }
    }

    #[test]
    fn may_act_names_the_actor_by_every_member() {
        let gw = actor("https://idp", "svc:gw", json!({ "client_id": "c1" }));
        assert!(may_act_allows(&claims(json!({})), &gw));
        let allows = |m: Value| may_act_allows(&claims(json!({ "may_act": m })), &gw);
        assert!(allows(json!({ "sub": "svc:gw" })));
        assert!(allows(
            json!({ "sub": "svc:gw", "iss": "https://idp", "client_id": "c1" })
        ));
        assert!(!allows(json!({ "sub": "svc:gw", "iss": "https://other" })));
        assert!(!allows(json!({ "sub": "svc:other" })));
        assert!(!allows(json!({ "sub": "svc:gw", "client_id": "c2" })));
        assert!(!allows(json!({})));
        assert!(!allows(json!("svc:gw")));
    }

    #[test]
    fn the_new_actor_wraps_the_kept_chain_within_the_depth_limit() {
        let gw = actor("https://idp", "svc:gw", json!({}));
        let prior = PriorAct::Kept(json!({ "sub": "a" }));
        assert_eq!(
            delegation(&prior, Some(&gw)),
            Ok(Some(
                json!({ "sub": "svc:gw", "iss": "https://idp", "act": { "sub": "a" } })
            ))
        );
        assert_eq!(delegation(&PriorAct::Dropped, None), Ok(None));
        let deep = PriorAct::Kept(
            json!({ "sub": "1", "act": { "sub": "2", "act": { "sub": "3", "act": { "sub": "4" } } } }),
        );
        assert_eq!(
            delegation(&deep, Some(&gw)),
            Err(RenderError::DelegationTooDeep)
        );
    }
}
