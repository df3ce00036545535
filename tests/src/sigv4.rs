//! AWS Signature Version 4 as STS checks it and moto does not: which access key signed a recorded
//! request, and whether the signature verifies with that key's secret. Built from AWS's
//! documented algorithm (canonical request, string to sign, derived signing key), for the
//! requests a [`crate::moto::RecordingProxy`] records.

use std::collections::HashMap;

use aws_lc_rs::{digest, hmac};

/// A signature that verified.
#[derive(Debug)]
pub struct Signature {
    /// The access key id of `Credential=` in `Authorization`.
    pub access_key_id: String,
    /// The credential scope after the access key id (`DATE/REGION/SERVICE/aws4_request`).
    pub scope: String,
    /// The headers the signature covers, lower case, in signing order.
    pub signed_headers: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// Verifies the SigV4 `Authorization` header of a `method` request to `uri` (path and query) with
/// `headers` (lower-case names) and `body`, against `secret`, the secret access key of the
/// access key id it names. Returns what the signature says, or why it does not verify.
pub fn verify(
    method: &str,
    uri: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
    secret: &str,
) -> Result<Signature, String> {
    let authorization = headers
        .get("authorization")
        .ok_or("the request has no Authorization header: it is unsigned")?;
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| format!("not a SigV4 Authorization: {authorization}"))?;
    let field = |name: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(name))
            .ok_or_else(|| format!("Authorization has no {name}: {authorization}"))
    };
    let credential = field("Credential=")?;
    let (access_key_id, scope) = credential
        .split_once('/')
        .ok_or_else(|| format!("malformed Credential={credential}"))?;
    let signed_headers: Vec<String> = field("SignedHeaders=")?
        .split(';')
        .map(str::to_owned)
        .collect();
    let signature = field("Signature=")?;
    let date = headers
        .get("x-amz-date")
        .ok_or("the request has no X-Amz-Date")?;

    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    if !query.is_empty() {
        return Err(format!(
            "this checker handles no query string (STS's query protocol posts a form): {uri}"
        ));
    }
    let mut canonical_headers = String::new();
    for name in &signed_headers {
        let value = headers
            .get(name)
            .ok_or_else(|| format!("signed header {name} is not in the request"))?;
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical_request = format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{}\n{}",
        signed_headers.join(";"),
        hex(digest::digest(&digest::SHA256, body).as_ref()),
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = mac(&key, part);
    }
    let expected = hex(&mac(&key, &string_to_sign));
    if expected != signature {
        return Err(format!(
            "the signature does not verify with the secret key of {access_key_id}"
        ));
    }
    Ok(Signature {
        access_key_id: access_key_id.to_owned(),
        scope: scope.to_owned(),
        signed_headers,
    })
}
