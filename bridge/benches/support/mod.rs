//! What the benchmarks share: a subject token shaped like a Kubernetes service-account token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use stsbridge::issuer::SigningKey;

/// A token from `issuer` for `audience`, service account `api` in namespace `namespace` with
/// subject `sub`, issued at `iat` (unix seconds) for an hour, signed by `key`.
pub fn token(
    key: &SigningKey,
    (issuer, audience): (&str, &str),
    sub: &str,
    namespace: &str,
    jti: &str,
    iat: u64,
) -> String {
    let header = json!({ "alg": key.algorithm().as_str(), "kid": key.kid(), "typ": "JWT" });
    let claims = json!({
        "iss": issuer, "sub": sub, "aud": audience, "iat": iat, "exp": iat + 3600, "jti": jti,
        "kubernetes.io": { "namespace": namespace, "serviceaccount": { "name": "api" } },
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
