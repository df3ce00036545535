//! Random ids (`jti`s, decision and request ids): 128 bits, or an error, never a constant.

use super::*;

/// Bytes of an id: 128 bits, so ids drawn at random do not collide in practice.
pub const ID_BYTES: usize = 16;

/// The system's random number generator failed, so no id could be drawn.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct RandomError;

/// 128 random bits, base64url: `jti`s, decision ids and request ids. Fails when the system's
/// generator fails: single-use checks, audit trails and revocation all key on these ids, so a
/// constant stand-in would merge unrelated tokens and decisions.
pub fn random_id() -> Result<String, RandomError> {
    id_from(|bytes| SystemRandom::new().fill(bytes))
}

/// An id from the bytes `fill` writes, or the error when it fails (whatever it wrote is dropped).
/// The generator is a parameter so that its failure can be tested: aws-lc-rs's `SecureRandom` is
/// sealed.
pub(super) fn id_from(
    fill: impl FnOnce(&mut [u8]) -> Result<(), aws_lc_rs::error::Unspecified>,
) -> Result<String, RandomError> {
    let mut bytes = [0u8; ID_BYTES];
    fill(&mut bytes).map_err(|_| RandomError)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
