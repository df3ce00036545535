//! Hashing as stsbridge uses it: SHA-256 (aws-lc-rs) of whole values, in hex or JOSE's base64url,
//! and the short hex hash that audit events carry. The one place for all of them.

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SHA-256 of several values, each prefixed by its length (8 bytes, big endian), so that no two
/// lists share a digest (`gh` + `xj` is not `ghx` + `j`): the keys of stored state.
pub fn sha256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        digest.update(&(part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.finish().as_ref());
    out
}

/// SHA-256 of `value`'s [`Hash`] stream: 32 bytes that stand for the whole value (the credential
/// cache's key). The stream is unambiguous for the types it is used on: strings end in 0xff, which
/// UTF-8 never holds, sequences start with their length, enums with their variant, and numbers
/// have a fixed width, so two different values never write the same bytes.
pub fn sha256_of_hash<T: std::hash::Hash + ?Sized>(value: &T) -> [u8; 32] {
    struct Stream(Vec<u8>);
    impl std::hash::Hasher for Stream {
        fn write(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
        fn finish(&self) -> u64 {
            0
        }
    }
    let mut stream = Stream(Vec::with_capacity(512));
    value.hash(&mut stream);
    sha256(&stream.0)
}

/// SHA-256 of `bytes`, base64url without padding: the JOSE form of a hash (RFC 8705's
/// `x5t#S256`, RFC 7638 thumbprints, RFC 9449's `ath`).
pub fn sha256_b64url(bytes: &[u8]) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        sha256(bytes),
    )
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// A truncated SHA-256, hex: correlates without revealing.
pub fn short_hash(value: &str) -> String {
    hex(&sha256(value.as_bytes())[..12])
}
