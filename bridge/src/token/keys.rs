//! Verification keys of a trusted issuer, parsed from a JWKS document.
//!
//! Keys come only from configuration (a JWKS URL, discovery or a file), never from a token header.
//! Unusable entries (encryption keys, unknown key types, RSA keys under 2048 bits) are skipped and
//! reported, so one odd key in an IdP's set does not take the whole issuer down.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::jose::Algorithm;
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Largest JWKS document accepted: real ones are a few KiB.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;
/// Most keys kept from one JWKS.
pub const MAX_KEYS: usize = 64;
/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// The key type a signature algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// RSA (RS*, PS*).
    Rsa,
    /// EC P-256 (ES256).
    P256,
    /// EC P-384 (ES384).
    P384,
    /// Ed25519 (EdDSA).
    Ed25519,
}

impl KeyFamily {
    /// The family `alg` needs.
    pub fn of(alg: Algorithm) -> KeyFamily {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::ES256 => KeyFamily::P256,
            Algorithm::ES384 => KeyFamily::P384,
            Algorithm::EdDSA => KeyFamily::Ed25519,
        }
    }
}

/// One verification key.
#[derive(Clone)]
pub struct VerifyingKey {
    /// `kid`, when the JWK has one.
    pub kid: Option<String>,
    /// Key type.
    pub family: KeyFamily,
    /// `alg` the JWK is restricted to, when it says.
    pub alg: Option<Algorithm>,
    /// The public key as aws-lc-rs parses it.
    public: Arc<[u8]>,
    /// For each algorithm the key may verify, the key parsed for it: the first at JWKS load
    /// (which also rejects a malformed key), the others on their first use. A verification then
    /// does no key parsing (about a third of an RS256 verification otherwise), and a key holds
    /// only the parsed forms its tokens use (an RSA key could serve six algorithms).
    parsed: Vec<(Algorithm, OnceLock<Option<ParsedPublicKey>>)>,
    /// SHA-256 of the key type and public key bytes: which key this is, `kid` or not.
    thumbprint: KeyThumbprint,
}

/// Identifies one public key by its material (SHA-256 of its family and public bytes), not by
/// its `kid`, which an issuer may omit or reuse.
pub type KeyThumbprint = [u8; 32];

fn thumbprint_of(family: KeyFamily, public: &[u8]) -> KeyThumbprint {
    crate::digest::sha256_parts(&[&[family as u8], public])
}

impl VerifyingKey {
    /// The key's [`KeyThumbprint`].
    pub fn thumbprint(&self) -> KeyThumbprint {
        self.thumbprint
    }

    /// Whether `signature` (raw bytes, JWS form: PKCS#1/PSS for RSA, fixed `r||s` for ECDSA) is
    /// this key's signature of `message` under `alg`. False for an algorithm the key cannot do.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        let Some((_, slot)) = self.parsed.iter().find(|(a, _)| *a == alg) else {
            return false;
        };
        slot.get_or_init(|| parse_for(alg, &self.public))
            .as_ref()
            .is_some_and(|key| key.verify_sig(message, signature).is_ok())
    }
}

fn parse_for(alg: Algorithm, public: &[u8]) -> Option<ParsedPublicKey> {
    ParsedPublicKey::new(verification(alg), public).ok()
}

/// The aws-lc-rs verification algorithm of a JOSE signature algorithm.
fn verification(alg: Algorithm) -> &'static dyn sig::VerificationAlgorithm {
    match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
    }
}

/// Every signature algorithm stsbridge verifies; a key may do those of its family.
const ALGORITHMS: [Algorithm; 9] = Algorithm::ALL;

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .finish()
    }
}

/// The usable keys of one issuer.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    by_kid: HashMap<String, Vec<usize>>,
}

impl KeySet {
    /// Builds a set from keys.
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        let mut by_kid: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if let Some(kid) = &k.kid {
                by_kid.entry(kid.clone()).or_default().push(i);
            }
        }
        KeySet { keys, by_kid }
    }

    /// Whether the key with this thumbprint is in the set.
    pub fn has_thumbprint(&self, thumbprint: &KeyThumbprint) -> bool {
        self.keys.iter().any(|k| &k.thumbprint == thumbprint)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this `kid` is present.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The keys that may verify a token with this `kid` (or any key, without one) and `alg`.
    /// `None` when a `kid` was given and no key has it.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Option<Vec<&VerifyingKey>> {
        let family = KeyFamily::of(alg);
        let fits = |k: &&VerifyingKey| k.family == family && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => {
                let idx = self.by_kid.get(kid)?;
                Some(idx.iter().map(|&i| &self.keys[i]).filter(fits).collect())
            }
            None => Some(self.keys.iter().filter(fits).collect()),
        }
    }
}

/// Why a JWKS document could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Larger than [`MAX_JWKS_BYTES`].
    #[error("the JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// Not a JSON object with a `keys` array.
    #[error("the document is not a JWKS (a JSON object with a keys array)")]
    NotJwks,
    /// No entry was usable.
    #[error("the JWKS has no usable signing key ({0})")]
    NoUsableKey(String),
}

/// Parses a JWKS document. Returns the usable keys and, for each skipped entry, why it was skipped.
pub fn parse_jwks(bytes: &[u8]) -> Result<(KeySet, Vec<String>), JwksError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|_| JwksError::NotJwks)?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NotJwks)?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if keys.len() == MAX_KEYS {
            skipped.push(format!("keys after the first {MAX_KEYS} are ignored"));
            break;
        }
        match parse_jwk(entry) {
            Ok(k) => keys.push(k),
            Err(why) => skipped.push(format!("key {i}: {why}")),
        }
    }
    if keys.is_empty() {
        let why = if skipped.is_empty() {
            "the keys array is empty".to_owned()
        } else {
            skipped.join("; ")
        };
        return Err(JwksError::NoUsableKey(why));
    }
    Ok((KeySet::new(keys), skipped))
}

pub(crate) fn parse_jwk(jwk: &Value) -> Result<VerifyingKey, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if let Some(usage) = field("use")
        && usage != "sig"
    {
        return Err(format!("use is {usage:?}, not sig"));
    }
    let kid = field("kid").map(str::to_owned);
    let alg = match field("alg") {
        None => None,
        Some(name) => match name.parse::<Algorithm>() {
            Ok(a) => Some(a),
            _ => {
                return Err(format!(
                    "alg {name:?} is not a supported signature algorithm"
                ));
            }
        },
    };
    let b64 = |name: &str| -> Result<Vec<u8>, String> {
        let value = field(name).ok_or_else(|| format!("key without {name}"))?;
        URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| format!("{name} is not base64url"))
    };
    // The public key in the form aws-lc-rs parses: SubjectPublicKeyInfo DER for RSA, the
    // uncompressed point for ECDSA, the raw 32 bytes for Ed25519.
    let (family, public): (KeyFamily, Vec<u8>) = match field("kty") {
        Some("RSA") => {
            let (n, e) = (b64("n")?, b64("e")?);
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(format!(
                    "RSA key of {} bits; at least 2048 are required",
                    significant * 8
                ));
            }
            let der: PublicKeyX509Der<'static> = RsaPublicKeyComponents { n: &n, e: &e }
                .as_der()
                .map_err(|_| "bad RSA components")?;
            (KeyFamily::Rsa, der.as_ref().to_vec())
        }
        Some("EC") => {
            let (family, size) = match field("crv") {
                Some("P-256") => (KeyFamily::P256, 32),
                Some("P-384") => (KeyFamily::P384, 48),
                other => return Err(format!("EC curve {other:?} is not supported")),
            };
            let (x, y) = (b64("x")?, b64("y")?);
            if x.len() != size || y.len() != size {
                return Err("bad EC components".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (family, point)
        }
        Some("OKP") => {
            if field("crv") != Some("Ed25519") {
                return Err("OKP keys must be Ed25519".into());
            }
            let x = b64("x")?;
            if x.len() != 32 {
                return Err("bad Ed25519 key".into());
            }
            (KeyFamily::Ed25519, x)
        }
        other => return Err(format!("kty {other:?} is not a signature key type")),
    };
    if let Some(a) = alg
        && KeyFamily::of(a) != family
    {
        return Err(format!("alg {a:?} does not fit the key type"));
    }
    let mut parsed: Vec<(Algorithm, OnceLock<Option<ParsedPublicKey>>)> = ALGORITHMS
        .iter()
        .filter(|a| KeyFamily::of(**a) == family && alg.is_none_or(|only| only == **a))
        .map(|a| (*a, OnceLock::new()))
        .collect();
    // Parsed now for the first algorithm (RS256 for an RSA key without `alg`): a malformed key
    // is refused at load, not at its first token.
    let first = parsed
        .first()
        .and_then(|(a, _)| parse_for(*a, &public))
        .ok_or(match family {
            KeyFamily::Rsa => "bad RSA components",
            KeyFamily::P256 | KeyFamily::P384 => "bad EC components",
            KeyFamily::Ed25519 => "bad Ed25519 key",
        })?;
    if let Some((_, slot)) = parsed.first_mut() {
        let _ = slot.set(Some(first));
    }
    Ok(VerifyingKey {
        kid,
        family,
        alg,
        thumbprint: thumbprint_of(family, &public),
        public: public.into(),
        parsed,
    })
}
