//! How providers ask stsbridge's own issuer for an assertion.
//!
//! The issuer (keys, rotation, the JWKS it publishes) lives in the service crate; providers see only
//! this trait, so they can mint the token a cloud is shown without knowing where the key is.

use std::time::{Duration, SystemTime};

use secrecy::SecretString;

/// What to put in a minted token. The signer adds `iss`, `iat`, `exp` and `jti`.
#[derive(Debug, Clone)]
pub struct MintSpec<'a> {
    /// `sub`.
    pub subject: &'a str,
    /// `aud`.
    pub audience: &'a str,
    /// Lifetime; `None` means the issuer's configured assertion lifetime.
    pub lifetime: Option<Duration>,
    /// Further claims (AWS session tags, `scope`, `act`...). Must not contain the registered claims
    /// the signer sets.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A signed compact JWS and its identifiers.
#[derive(Debug)]
pub struct MintedAssertion {
    /// The compact token.
    pub token: SecretString,
    /// Its `jti`, for the audit event.
    pub jti: String,
    /// Its `exp`.
    pub expires_at: SystemTime,
}

/// Why minting failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// No signing key is loaded.
    #[error("no signing key is available")]
    NoKey,
    /// The crypto library refused to sign.
    #[error("signing failed")]
    Crypto,
    /// The system's random number generator failed, so the token could get no `jti`.
    #[error("the random number generator failed")]
    Random,
    /// The extra claims tried to set a claim the issuer owns.
    #[error("claim {0} is set by the issuer and cannot be overridden")]
    ReservedClaim(String),
}

/// stsbridge's own issuer, as providers see it.
pub trait AssertionSigner: Send + Sync + 'static {
    /// The `iss` of every token this signer mints.
    fn issuer(&self) -> &str;

    /// Mints a token per `spec`, issued at `now`.
    ///
    /// Fails with [`SignError::NoKey`] when no key is loaded, [`SignError::ReservedClaim`] when `spec`
    /// tries to set `iss`, `iat`, `exp`, `nbf` or `jti`, [`SignError::Random`] when no random `jti`
    /// can be drawn, and [`SignError::Crypto`] if signing fails.
    fn mint(&self, spec: MintSpec<'_>, now: SystemTime) -> Result<MintedAssertion, SignError>;
}

/// The token a cloud is shown for `source`: a fresh assertion for `audience` with `extra` claims
/// (its `jti` recorded in `upstream`), or the caller's own token for a passthrough target.
pub(crate) fn assertion_for(
    signer: &dyn AssertionSigner,
    source: &crate::AssertionSource,
    audience: &str,
    extra: serde_json::Map<String, serde_json::Value>,
    now: SystemTime,
    upstream: &mut crate::UpstreamInfo,
) -> Result<SecretString, SignError> {
    match source {
        crate::AssertionSource::Mint { subject } => {
            let minted = signer.mint(
                MintSpec {
                    subject,
                    audience,
                    lifetime: None,
                    extra,
                },
                now,
            )?;
            upstream.assertion_jti = Some(minted.jti.into());
            Ok(minted.token)
        }
        crate::AssertionSource::Passthrough(token) => Ok(SecretString::from(token.expose())),
    }
}
