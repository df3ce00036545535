//! Verification keys of a trusted issuer, parsed from a JWKS document.
//!
//! Keys come only from configuration (a JWKS URL, discovery or a file), never from a token header.
//! Unusable entries (encryption keys, unknown key types, RSA keys under 2048 bits) are skipped and
//! reported, so one odd key in an IdP's set does not take the whole issuer down.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
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
    /// The family `alg` needs; `None` for algorithms issuers may never use (HMAC).
    pub fn of(alg: Algorithm) -> Option<KeyFamily> {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Some(KeyFamily::Rsa),
            Algorithm::ES256 => Some(KeyFamily::P256),
            Algorithm::ES384 => Some(KeyFamily::P384),
            Algorithm::EdDSA => Some(KeyFamily::Ed25519),
            _ => None,
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
    /// The key in `jsonwebtoken`'s form.
    pub key: DecodingKey,
}

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
        let fits = |k: &&VerifyingKey| Some(k.family) == family && k.alg.is_none_or(|a| a == alg);
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

fn parse_jwk(jwk: &Value) -> Result<VerifyingKey, String> {
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
            Ok(a) if KeyFamily::of(a).is_some() => Some(a),
            _ => {
                return Err(format!(
                    "alg {name:?} is not a supported signature algorithm"
                ));
            }
        },
    };
    let (family, key) = match field("kty") {
        Some("RSA") => {
            let (n, e) = (
                field("n").ok_or("RSA key without n")?,
                field("e").ok_or("RSA key without e")?,
            );
            let modulus = URL_SAFE_NO_PAD
                .decode(n)
                .map_err(|_| "n is not base64url")?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(format!(
                    "RSA key of {} bits; at least 2048 are required",
                    significant * 8
                ));
            }
            let key = DecodingKey::from_rsa_components(n, e).map_err(|_| "bad RSA components")?;
            (KeyFamily::Rsa, key)
        }
        Some("EC") => {
            let family = match field("crv") {
                Some("P-256") => KeyFamily::P256,
                Some("P-384") => KeyFamily::P384,
                other => return Err(format!("EC curve {other:?} is not supported")),
            };
            let (x, y) = (
                field("x").ok_or("EC key without x")?,
                field("y").ok_or("EC key without y")?,
            );
            (
                family,
                DecodingKey::from_ec_components(x, y).map_err(|_| "bad EC components")?,
            )
        }
        Some("OKP") => {
            if field("crv") != Some("Ed25519") {
                return Err("OKP keys must be Ed25519".into());
            }
            let x = field("x").ok_or("OKP key without x")?;
            (
                KeyFamily::Ed25519,
                DecodingKey::from_ed_components(x).map_err(|_| "bad Ed25519 key")?,
            )
        }
        other => return Err(format!("kty {other:?} is not a signature key type")),
    };
    if let Some(a) = alg
        && KeyFamily::of(a) != Some(family)
    {
        return Err(format!("alg {a:?} does not fit the key type"));
    }
    Ok(VerifyingKey {
        kid,
        family,
        alg,
        key,
    })
}
