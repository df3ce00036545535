//! Hashing as stsbridge uses it: SHA-256 (aws-lc-rs) of whole values, and the short hex hash that
//! audit events carry. The one place for both.

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A truncated SHA-256, hex: correlates without revealing.
pub fn short_hash(value: &str) -> String {
    let digest = sha256(value.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(24);
    for b in &digest[..12] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}
