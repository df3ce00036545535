//! stsbridge's signing keys: generated or read from PKCS#8, their public JWK and RFC 7638 `kid`,
//! and signing.

use super::*;

pub(super) enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// One signing key with its public JWK.
pub struct SigningKey {
    pub(super) kid: String,
    pub(super) alg: SigningAlgorithm,
    pub(super) pair: Pair,
    pub(super) jwk: Value,
    /// The JWS header of every token it signs, base64url-encoded once: `{"alg","kid","typ":"JWT"}`.
    pub(super) encoded_header: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key; returns it with its PKCS#8 DER (to be written to the key directory).
    pub fn generate(alg: SigningAlgorithm) -> Result<(Self, Zeroizing<Vec<u8>>), IssuerError> {
        let der = match alg {
            SigningAlgorithm::Rs256 => {
                let pair =
                    RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| IssuerError::Generate)?;
                let der = pair.as_der().map_err(|_| IssuerError::Generate)?;
                Zeroizing::new(der.as_ref().to_vec())
            }
            SigningAlgorithm::Es256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| IssuerError::Generate)?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
        };
        let key = Self::from_pkcs8(&der).ok_or(IssuerError::Generate)?;
        Ok((key, der))
    }

    /// Reads a PKCS#8 DER private key (RSA or P-256).
    pub fn from_pkcs8(der: &[u8]) -> Option<Self> {
        let (alg, pair, jwk) = if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
            let public = pair.public_key();
            let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
            let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
            (
                SigningAlgorithm::Rs256,
                Pair::Rsa(pair),
                json!({ "kty": "RSA", "e": e, "n": n }),
            )
        } else if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return None;
            }
            let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
            let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
            (
                SigningAlgorithm::Es256,
                Pair::Ec(pair),
                json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }),
            )
        } else {
            return None;
        };
        let kid = thumbprint(&jwk);
        let mut jwk = jwk;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg.as_str());
        jwk["use"] = json!("sig");
        let header = json!({ "alg": alg.as_str(), "kid": kid, "typ": "JWT" });
        Some(SigningKey {
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            kid,
            alg,
            pair,
            jwk,
        })
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JOSE algorithm it signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.alg
    }

    /// The public JWK.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// Signs `message` (the JWS signing input) with this key.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| SignError::Crypto)?;
                Ok(sig)
            }
            Pair::Ec(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Crypto),
        }
    }
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order.
pub(super) fn thumbprint(jwk: &Value) -> String {
    let canonical = match jwk["kty"].as_str() {
        Some("RSA") => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str().unwrap_or(""),
            jwk["n"].as_str().unwrap_or("")
        ),
        _ => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str().unwrap_or(""),
            jwk["x"].as_str().unwrap_or(""),
            jwk["y"].as_str().unwrap_or("")
        ),
    };
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}
