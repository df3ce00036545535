//! Credentials as they come back from a provider.
//!
//! Secret parts are [`SecretString`]s: `Debug` prints `[REDACTED]` and the memory is zeroized when the
//! value is dropped. Reading a secret needs an explicit `expose_secret()`, which only the HTTP layer
//! does when it writes the response body.

use std::time::SystemTime;

use secrecy::SecretString;

/// A credential of any provider.
#[derive(Debug)]
pub enum Credential {
    /// Temporary AWS credentials from STS.
    Aws(AwsCredential),
    /// A bearer token: a GCP access token, an Azure access token, or an internal JWT.
    Token(AccessToken),
}

impl Credential {
    /// When the credential stops working, as the upstream said.
    pub fn expires_at(&self) -> SystemTime {
        match self {
            Credential::Aws(c) => c.expiration,
            Credential::Token(t) => t.expires_at,
        }
    }

    /// A public identifier of this credential, fit to be hashed into an audit event (the access key
    /// id, or the token's `jti`); never the secret itself.
    pub fn public_id(&self) -> &str {
        match self {
            Credential::Aws(c) => &c.access_key_id,
            Credential::Token(t) => &t.id,
        }
    }
}

/// Temporary AWS credentials.
#[derive(Debug)]
pub struct AwsCredential {
    /// `AccessKeyId` (an identifier, not a secret, but still never logged whole).
    pub access_key_id: String,
    /// `SecretAccessKey`.
    pub secret_access_key: SecretString,
    /// `SessionToken`.
    pub session_token: SecretString,
    /// `Expiration` as STS returned it.
    pub expiration: SystemTime,
    /// The account the credentials act in (from the ARN of the last hop's assumed-role session;
    /// the ARN itself is not kept: nothing reads it, and every cached credential would carry it).
    pub account_id: Option<String>,
}

/// A bearer token with its metadata.
#[derive(Debug)]
pub struct AccessToken {
    /// The token.
    pub token: SecretString,
    /// RFC 8693 `issued_token_type`.
    pub issued_token_type: String,
    /// RFC 6749 `token_type` (`Bearer`, or `N_A` for a token that is not an access token).
    pub token_type: String,
    /// When the token expires.
    pub expires_at: SystemTime,
    /// Granted scopes, space separated, when the token carries any.
    pub scope: Option<String>,
    /// A public identifier (the token's `jti`).
    pub id: String,
}

/// The account id inside an ARN (`arn:partition:service:region:ACCOUNT:resource`), when it has one.
pub fn account_of_arn(arn: &str) -> Option<String> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then(|| account.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn account_comes_from_the_fifth_field() {
        assert_eq!(
            account_of_arn("arn:aws:sts::123456789012:assumed-role/r/s").as_deref(),
            Some("123456789012")
        );
        assert_eq!(account_of_arn("arn:aws:iam::role/x"), None);
        assert_eq!(account_of_arn("nonsense"), None);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = AwsCredential {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: SecretString::from("very-secret-key"),
            session_token: SecretString::from("very-secret-token"),
            expiration: SystemTime::UNIX_EPOCH,
            account_id: None,
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert_eq!(c.secret_access_key.expose_secret(), "very-secret-key");
    }
}
