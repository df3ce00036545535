//! The leak check: a secret is searched in every form a careless line of code could write it in,
//! not only as the whole string.
//!
//! What counts as secret, and so is searched:
//! - an opaque value (a secret access key, a session token, an agent secret, a cloud's access
//!   token): the whole value, and every window of [`WINDOW`] characters of it, so a truncated or
//!   partly written value is found too;
//! - a compact JWT: the whole token, and its claims and signature segments, whole and by windows.
//!   Not its header: `{"alg","kid","typ"}` is the same for every token signed by one key, and the
//!   `kid` is published in the JWKS, so the header is neither secret nor evidence of one token;
//! - a private key: the whole PEM and its DER body (base64, and the DER bytes in hex), and the
//!   body's windows, except the windows that are not secret: the ASN.1 structure every key of its
//!   kind shares (found by comparing with a freshly generated key) and the public key, which is
//!   published.
//!
//! Each whole value and each segment is also searched in base64 (standard and url-safe, padded and
//! not, at each of the three byte alignments, so it is found inside a larger encoded blob), in
//! hex, percent-encoded and JSON-escaped.
//!
//! A window of [`WINDOW`] characters of a random value occurs in unrelated text with negligible
//! probability. Not every window is random, though: a JWT's claims segment begins like every
//! other token's of its issuer (`{"iss":"https://...`) and carries public values (the issuer,
//! `sub`, session tags that a minted assertion repeats), moto's session tokens share a prefix. A
//! window that two different secrets of a scan share is such a common part: it is evidence of
//! neither and is not searched (their other forms are). So a finding names the secret that leaked.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// The length of the windows searched: 96 bits of a base64 secret, 64 of a hex one.
pub const WINDOW: usize = 16;

/// A secret that nothing the server writes may contain, with every form it is searched in.
#[derive(Debug, Clone)]
pub struct Secret {
    kind: String,
    value: String,
    needles: Vec<Needle>,
}

/// One form of a secret.
#[derive(Debug, Clone)]
struct Needle {
    /// What form it is (`signature segment in base64`, `window at 40 of the value`...).
    form: String,
    /// The text searched: at least [`WINDOW`] bytes.
    text: String,
    /// Whether it is a window (searched only when no other secret has it).
    window: bool,
}

impl Secret {
    /// A value as a JWT when it is a compact JWT (three base64url segments, a JSON header with
    /// `alg`), else as an opaque value.
    pub fn new(kind: &str, value: &str) -> Secret {
        Self::jwt(kind, value).unwrap_or_else(|| Self::opaque(kind, value))
    }

    /// An opaque value: whole, encoded, and by windows.
    pub fn opaque(kind: &str, value: &str) -> Secret {
        let mut secret = Secret::empty(kind, value);
        secret.whole("value", value);
        secret.windows("value", value);
        secret
    }

    /// A compact JWT; `None` when `token` is not one.
    pub fn jwt(kind: &str, token: &str) -> Option<Secret> {
        let segments: Vec<&str> = token.split('.').collect();
        let [header, claims, signature] = segments[..] else {
            return None;
        };
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        header.get("alg")?;
        // Only the alphabet: a tampered signature need not decode to whole bytes.
        let base64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !base64url(claims) || !base64url(signature) {
            return None;
        }
        let mut secret = Secret::empty(kind, token);
        secret.whole("token", token);
        for (part, segment) in [("claims segment", claims), ("signature segment", signature)] {
            if segment.len() >= WINDOW {
                secret.whole(part, segment);
                secret.windows(part, segment);
            }
        }
        Some(secret)
    }

    /// A PEM private key (PKCS#8, RSA or P-256); `public` are texts known to be public (the
    /// bridge's JWKS): no window found in them, or in the key's own public key, or in another key
    /// of the same kind, is searched.
    pub fn private_key(kind: &str, pem: &str, public: &[&str]) -> Secret {
        let body = pem_body(pem);
        let der = STANDARD
            .decode(&body)
            .unwrap_or_else(|e| panic!("{kind} is not PEM: {e}"));
        let key = rcgen::KeyPair::from_pem(pem)
            .unwrap_or_else(|e| panic!("{kind} is not a private key: {e}"));
        let other = rcgen::KeyPair::generate_for(key.algorithm()).unwrap();
        let mut not_secret: Vec<String> = vec![
            pem_body(&other.serialize_pem()),
            pem_body(&key.public_key_pem()),
        ];
        for text in public {
            not_secret.push((*text).to_owned());
            // The JWKS's base64url, as it would read in the PEM body's alphabet.
            not_secret.push(text.replace('-', "+").replace('_', "/"));
        }
        let mut secret = Secret::empty(kind, pem);
        secret.whole("PEM", pem.trim());
        secret.whole("DER body", &body);
        secret.push("DER in hex", hex(&der, false));
        secret.push("DER in HEX", hex(&der, true));
        secret.push("DER in url-safe base64", URL_SAFE_NO_PAD.encode(&der));
        secret.windows("DER body", &body);
        secret.needles.retain(|needle| {
            !needle.window || !not_secret.iter().any(|text| text.contains(&needle.text))
        });
        assert!(
            secret.needles.iter().filter(|n| n.window).count() > body.len() / 4,
            "{kind}: most of the key is secret"
        );
        secret
    }

    /// What kind of secret this is (`session token`...).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    fn empty(kind: &str, value: &str) -> Secret {
        Secret {
            kind: kind.to_owned(),
            value: value.to_owned(),
            needles: Vec::new(),
        }
    }

    fn push(&mut self, form: &str, text: String) {
        self.push_needle(form, text, false);
    }

    fn push_needle(&mut self, form: &str, text: String, window: bool) {
        if text.len() >= WINDOW && !self.needles.iter().any(|n| n.text == text) {
            self.needles.push(Needle {
                form: form.to_owned(),
                text,
                window,
            });
        }
    }

    /// `value` itself and its encodings.
    fn whole(&mut self, part: &str, value: &str) {
        assert!(
            value.len() >= WINDOW && value.is_ascii(),
            "{}: a {part} of {} bytes cannot be searched reliably",
            self.kind,
            value.len()
        );
        self.push(part, value.to_owned());
        let bytes = value.as_bytes();
        for (name, engine) in [
            ("base64", &STANDARD),
            ("unpadded base64", &STANDARD_NO_PAD),
            ("url-safe base64", &URL_SAFE),
            ("unpadded url-safe base64", &URL_SAFE_NO_PAD),
        ] {
            self.push(&format!("{part} in {name}"), engine.encode(bytes));
        }
        // Inside a larger base64 text the value starts at any byte alignment: the characters
        // that depend only on its own bytes are the middle of its encoding after 0, 1 or 2
        // leading bytes.
        for (name, engine) in [
            ("base64", &STANDARD_NO_PAD),
            ("url-safe base64", &URL_SAFE_NO_PAD),
        ] {
            for lead in 0..3 {
                let mut shifted = vec![0u8; lead];
                shifted.extend_from_slice(bytes);
                let encoded = engine.encode(&shifted);
                let skip = if lead == 0 { 0 } else { 4 };
                if encoded.len() > skip + 4 {
                    self.push(
                        &format!("{part} inside {name} (alignment {lead})"),
                        encoded[skip..encoded.len() - 4].to_owned(),
                    );
                }
            }
        }
        self.push(&format!("{part} in hex"), hex(bytes, false));
        self.push(&format!("{part} in HEX"), hex(bytes, true));
        self.push(&format!("{part} percent-encoded"), percent_encoded(bytes));
        self.push(
            &format!("{part} JSON-escaped"),
            serde_json::to_string(value)
                .unwrap()
                .trim_matches('"')
                .to_owned(),
        );
    }

    /// Every window of `value`.
    fn windows(&mut self, part: &str, value: &str) {
        for start in 0..(value.len() + 1).saturating_sub(WINDOW) {
            self.push_needle(
                &format!("window at {start} of the {part}"),
                value[start..start + WINDOW].to_owned(),
                true,
            );
        }
    }
}

/// The base64 between a PEM's `-----BEGIN` and `-----END` lines, joined.
fn pem_body(pem: &str) -> String {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect()
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encoded(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Where `secrets` occur in `haystack`: one line per secret found, naming the form found and its
/// first characters (a found window names where in the secret it starts). Windows that two
/// secrets of different values share are not searched (see the module's doc).
pub fn find_secrets(what: &str, haystack: &str, secrets: &[Secret]) -> Vec<String> {
    let mut owners: HashMap<&str, &str> = HashMap::new();
    let mut shared: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for secret in secrets {
        for needle in secret.needles.iter().filter(|n| n.window) {
            match owners.insert(&needle.text, &secret.value) {
                Some(other) if other != secret.value => {
                    shared.insert(&needle.text);
                }
                _ => {}
            }
        }
    }
    // One pass over the haystack: every needle is looked up by its first WINDOW bytes.
    let mut by_prefix: HashMap<&[u8], Vec<(usize, usize)>> = HashMap::new();
    for (s, secret) in secrets.iter().enumerate() {
        for (n, needle) in secret.needles.iter().enumerate() {
            if needle.window && shared.contains(needle.text.as_str()) {
                continue;
            }
            by_prefix
                .entry(&needle.text.as_bytes()[..WINDOW])
                .or_default()
                .push((s, n));
        }
    }
    let bytes = haystack.as_bytes();
    let mut found: Vec<Option<String>> = vec![None; secrets.len()];
    for start in 0..(bytes.len() + 1).saturating_sub(WINDOW) {
        let Some(candidates) = by_prefix.get(&bytes[start..start + WINDOW]) else {
            continue;
        };
        for &(s, n) in candidates {
            let needle = &secrets[s].needles[n];
            if found[s].is_none() && bytes[start..].starts_with(needle.text.as_bytes()) {
                found[s] = Some(format!(
                    "{what} contains a {} ({}, starting {:?})",
                    secrets[s].kind,
                    needle.form,
                    &needle.text[..8]
                ));
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// Fails the test if any of `secrets` occurs in `haystack`, in any form; `what` names the
/// haystack. Only a short prefix of a leaked value is printed.
pub fn assert_no_secrets(what: &str, haystack: &str, secrets: &[Secret]) {
    let found = find_secrets(what, haystack, secrets);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";

    fn found(haystack: &str) -> Vec<String> {
        find_secrets("text", haystack, &[Secret::new("secret key", SECRET)])
    }

    #[test]
    fn a_secret_is_found_whole_truncated_and_encoded() {
        assert!(found("nothing here").is_empty());
        for haystack in [
            format!("key={SECRET}"),
            format!("key={}...", &SECRET[5..25]),
            format!("b64={}", STANDARD.encode(SECRET)),
            format!("b64={}", URL_SAFE_NO_PAD.encode(format!("xy{SECRET}z"))),
            format!("hex={}", hex(SECRET.as_bytes(), false)),
            format!("url={}", percent_encoded(SECRET.as_bytes())),
        ] {
            assert_eq!(found(&haystack).len(), 1, "{haystack}");
        }
    }

    #[test]
    fn a_jwt_is_found_by_its_secret_segments_not_its_header() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"svc:alice","jti":"0123456789abcdef"}"#);
        let signature = URL_SAFE_NO_PAD.encode([7u8; 64]);
        let token = format!("{header}.{claims}.{signature}");
        let secrets = [Secret::new("token", &token)];
        assert!(find_secrets("log", &format!("header {header}"), &secrets).is_empty());
        for haystack in [&claims, &signature, &signature[30..50].to_owned()] {
            assert_eq!(find_secrets("log", haystack, &secrets).len(), 1);
        }
    }

    #[test]
    fn a_window_two_secrets_share_names_neither() {
        let common = "the-shared-part-of-both-0123456789";
        let secrets = [
            Secret::new("first", &format!("{common}-first-4f9a1c2e7b")),
            Secret::new("second", &format!("{common}-second-8d3b6e0a5c")),
        ];
        assert!(find_secrets("log", &format!("[{common}]"), &secrets).is_empty());
        let found = find_secrets("log", "[-second-8d3b6e0a5c]", &secrets);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("a second"), "{found:?}");
    }
}
