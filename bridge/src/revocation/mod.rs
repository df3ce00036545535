//! Revocations: what a compromised token, caller, issuer or target is refused for, until when, and
//! how every replica learns of it.
//!
//! Rooms: this file (the model, the checks of a new revocation, the set an exchange consults),
//! `store` (where revocations are kept: Redis with shared state, else a local file or memory),
//! `live` (the set this replica applies, re-read when the store says it changed), `reference`
//! (reference tokens: opaque handles for minted tokens, read back by introspection).

mod live;
pub mod reference;
mod store;

pub use live::{Applied, CreateError, REREAD, Revocations};
pub use store::{RevocationStore, StoreError};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::rfc3339;
use crate::config::DEFAULT_REVOCATION;
use crate::token::ValidatedToken;

/// Longest `value` or `reason`: an identifier or a sentence, not a document.
pub const MAX_FIELD_BYTES: usize = 1024;
/// Largest request body of the revocation API.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most revocations live at once: past it new ones are refused (409), so that a runaway script
/// cannot make every exchange's check or every replica's re-read unbounded.
pub const MAX_ACTIVE: usize = 100_000;

/// What a revocation matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One subject (`sub`) of one trust entry, as subject, actor or anywhere in a kept chain.
    Subject,
    /// One `jti` of one trust entry.
    Jti,
    /// One presented token, by the SHA-256 (hex) of its bytes.
    Token,
    /// Every token of a trust entry.
    Issuer,
    /// A target: no one obtains it, and its cached credentials are dropped.
    Target,
    /// A token stsbridge minted, by its `jti`.
    Minted,
}

impl Kind {
    /// Every kind, for messages.
    pub const ALL: [Kind; 6] = [
        Kind::Subject,
        Kind::Jti,
        Kind::Token,
        Kind::Issuer,
        Kind::Target,
        Kind::Minted,
    ];

    /// The name in the API, metrics and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Subject => "subject",
            Kind::Jti => "jti",
            Kind::Token => "token",
            Kind::Issuer => "issuer",
            Kind::Target => "target",
            Kind::Minted => "minted",
        }
    }

    fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether the revocation names a trust entry in `issuer` (and its `value` is within it).
    fn scoped(self) -> bool {
        matches!(self, Kind::Subject | Kind::Jti)
    }
}

/// One revocation, as stored and as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Its id (`rev_` and 128 random bits).
    pub id: String,
    /// What it matches.
    pub kind: Kind,
    /// The trust entry, for `subject` and `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The subject, `jti`, token hash, trust entry, target or minted `jti`.
    pub value: String,
    /// When it was created, unix milliseconds.
    pub created_ms: u64,
    /// When it stops applying, unix milliseconds.
    pub expires_ms: u64,
    /// Why (free text from whoever revoked).
    pub reason: String,
    /// Who revoked: trust entry and subject of the caller's token.
    pub by: String,
}

impl Revocation {
    /// Whether it still applies at `now`.
    pub fn live(&self, now: SystemTime) -> bool {
        unix_ms(now) < self.expires_ms
    }

    /// When it was created.
    pub fn created(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.created_ms)
    }

    /// Its API form: `{id, kind, issuer, value, created, expires, reason, by}`.
    pub fn view(&self) -> Value {
        let mut v = serde_json::json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "value": self.value,
            "created": rfc3339(self.created()),
            "expires": rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(self.expires_ms)),
            "reason": self.reason,
            "by": self.by,
        });
        if let (Some(issuer), Some(map)) = (&self.issuer, v.as_object_mut()) {
            map.insert("issuer".into(), Value::String(issuer.clone()));
        }
        v
    }
}

/// Unix milliseconds of `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The body of `POST /v1/revocations`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRevocation {
    /// `token`, `subject`, `jti`, `issuer` or `target`.
    #[schema(example = "subject")]
    pub kind: String,
    /// The trust entry, for `subject` and `jti`.
    pub issuer: Option<String>,
    /// What is revoked.
    pub value: String,
    /// How long (default 24h), as `30m`, `24h`, `7d`.
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// Why.
    pub reason: String,
}

/// A refused revocation request: the field and what is wrong with it (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// What a new revocation is checked against: the names in use now and the longest `for`.
pub struct Known<'a> {
    /// Whether a trust entry of this name exists (stsbridge's own included).
    pub trust: &'a dyn Fn(&str) -> bool,
    /// Whether a target of this name exists.
    pub target: &'a dyn Fn(&str) -> bool,
    /// The longest `for`.
    pub max_for: Duration,
}

impl NewRevocation {
    /// The revocation it asks for, made by `by` at `now` with `id`; or the first field that is
    /// wrong. Nothing about it is stored here.
    pub fn check(
        self,
        known: &Known<'_>,
        id: String,
        by: String,
        now: SystemTime,
    ) -> Result<Revocation, Invalid> {
        let kind = Kind::parse(&self.kind).ok_or_else(|| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            invalid(
                "kind",
                format!(
                    "{:?} is not a kind; use one of {}",
                    truncate(&self.kind),
                    names.join(", ")
                ),
            )
        })?;
        let value = self.value.trim().to_owned();
        if value.is_empty() {
            return Err(invalid("value", "must not be empty"));
        }
        if value.len() > MAX_FIELD_BYTES {
            return Err(invalid(
                "value",
                format!("longer than {MAX_FIELD_BYTES} bytes"),
            ));
        }
        let issuer = match (kind.scoped(), self.issuer) {
            (true, None) => {
                return Err(invalid(
                    "issuer",
                    format!("a {} revocation names its trust entry", kind.as_str()),
                ));
            }
            (true, Some(name)) if !(known.trust)(&name) => {
                return Err(invalid(
                    "issuer",
                    format!("{:?} is not a trust entry", truncate(&name)),
                ));
            }
            (false, Some(_)) => {
                return Err(invalid(
                    "issuer",
                    format!(
                        "a {} revocation names no trust entry; leave issuer out",
                        kind.as_str()
                    ),
                ));
            }
            (_, issuer) => issuer,
        };
        match kind {
            Kind::Token
                if value.len() != 64
                    || !value
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
            {
                return Err(invalid(
                    "value",
                    "a token revocation is the SHA-256 of the token, 64 lower-case hex digits (the CLI computes it; the token itself never travels)",
                ));
            }
            Kind::Issuer if !(known.trust)(&value) => {
                return Err(invalid(
                    "value",
                    format!("{:?} is not a trust entry", truncate(&value)),
                ));
            }
            Kind::Target if !(known.target)(&value) => {
                return Err(invalid(
                    "value",
                    format!("{:?} is not a target", truncate(&value)),
                ));
            }
            _ => {}
        }
        let length = match self.for_.as_deref() {
            None => DEFAULT_REVOCATION,
            Some(text) => crate::config::parse_duration(text).map_err(|m| invalid("for", m))?,
        };
        if length.is_zero() {
            return Err(invalid("for", "must be longer than zero"));
        }
        if length > known.max_for {
            return Err(invalid(
                "for",
                format!(
                    "longer than the longest allowed ({}, revocations.max_for)",
                    crate::config::format_duration(known.max_for)
                ),
            ));
        }
        let reason = self.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(invalid("reason", "say why (it is in the audit log)"));
        }
        if reason.len() > MAX_FIELD_BYTES {
            return Err(invalid(
                "reason",
                format!("longer than {MAX_FIELD_BYTES} bytes"),
            ));
        }
        let created_ms = unix_ms(now);
        Ok(Revocation {
            id,
            kind,
            issuer,
            value,
            created_ms,
            expires_ms: created_ms
                .saturating_add(u64::try_from(length.as_millis()).unwrap_or(u64::MAX)),
            reason,
            by,
        })
    }
}

/// At most 64 characters of what a caller sent, for an error message.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The live revocations, indexed for the exchange's checks.
#[derive(Debug, Default)]
pub struct RevocationSet {
    by_match: HashMap<(Kind, Option<String>, String), Arc<Revocation>>,
    all: Vec<Arc<Revocation>>,
    /// Whether any is of kind `token` (only then is a presented token hashed).
    tokens: bool,
}

/// The parts of a presented token a revocation can match.
pub struct Presented<'a> {
    /// The validated token.
    pub token: &'a ValidatedToken,
    /// Its bytes, for `token` revocations.
    pub raw: &'a str,
    /// Its kept delegation chain, if any.
    pub chain: Option<&'a Value>,
}

impl RevocationSet {
    /// The set of `revocations` live at `now`.
    pub fn new(revocations: impl IntoIterator<Item = Revocation>, now: SystemTime) -> Self {
        let mut set = RevocationSet::default();
        for r in revocations.into_iter().filter(|r| r.live(now)) {
            let r = Arc::new(r);
            set.by_match
                .entry((r.kind, r.issuer.clone(), r.value.clone()))
                .or_insert_with(|| Arc::clone(&r));
            set.tokens |= r.kind == Kind::Token;
            set.all.push(r);
        }
        set.all
            .sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        set
    }

    /// Every revocation, oldest first (expired ones included until the next re-read).
    pub fn all(&self) -> &[Arc<Revocation>] {
        &self.all
    }

    /// Whether there are none (the exchange then checks nothing).
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    fn find(
        &self,
        kind: Kind,
        issuer: Option<&str>,
        value: &str,
        now: SystemTime,
    ) -> Option<&Arc<Revocation>> {
        // The key is owned; a lookup allocates only while revocations of this kind exist.
        self.by_match
            .get(&(kind, issuer.map(str::to_owned), value.to_owned()))
            .filter(|r| r.live(now))
    }

    /// The revocation that covers `token` at `now`, if any: its trust entry, subject, `jti`,
    /// bytes, stsbridge's `jti` when stsbridge minted it, and every party of its kept chain
    /// (`trust_of` names the trust entry of an `iss` URL).
    pub fn covering(
        &self,
        presented: &Presented<'_>,
        own_trust: &str,
        trust_of: &dyn Fn(&str) -> Option<String>,
        now: SystemTime,
    ) -> Option<Arc<Revocation>> {
        if self.all.is_empty() {
            return None;
        }
        let t = presented.token;
        let trust = Some(t.trust.as_str());
        let hit = self
            .find(Kind::Issuer, None, &t.trust, now)
            .or_else(|| self.find(Kind::Subject, trust, &t.subject, now))
            .or_else(|| {
                t.jti.as_deref().and_then(|jti| {
                    self.find(Kind::Jti, trust, jti, now).or_else(|| {
                        (t.trust == own_trust)
                            .then(|| self.find(Kind::Minted, None, jti, now))
                            .flatten()
                    })
                })
            })
            .or_else(|| {
                self.tokens.then(|| {
                    let digest =
                        crate::digest::hex(&crate::digest::sha256(presented.raw.as_bytes()));
                    self.find(Kind::Token, None, &digest, now)
                })?
            });
        if let Some(r) = hit {
            return Some(Arc::clone(r));
        }
        // Every party of a kept chain: `{sub, iss?, act?}` levels.
        let mut level = presented.chain;
        while let Some(Value::Object(party)) = level {
            if let (Some(Value::String(sub)), Some(Value::String(iss))) =
                (party.get("sub"), party.get("iss"))
                && let Some(name) = trust_of(iss)
            {
                let found = self
                    .find(Kind::Issuer, None, &name, now)
                    .or_else(|| self.find(Kind::Subject, Some(&name), sub, now));
                if let Some(r) = found {
                    return Some(Arc::clone(r));
                }
            }
            level = party.get("act");
        }
        None
    }

    /// The revocation of `target` at `now`, if any.
    pub fn of_target(&self, target: &str, now: SystemTime) -> Option<Arc<Revocation>> {
        if self.all.is_empty() {
            return None;
        }
        self.find(Kind::Target, None, target, now).map(Arc::clone)
    }
}

#[cfg(test)]
mod tests;
