//! Credentials as they come back from a provider.
//!
//! Secret parts are [`SecretString`]s: `Debug` prints `[REDACTED]` and the memory is zeroized when the
//! value is dropped. Reading a secret needs an explicit `expose_...` call, which only the HTTP layer
//! (writing the response body) and a chained AWS hop (signing with the previous hop's
//! credentials) make.

use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

/// A credential of any provider.
#[derive(Debug)]
pub enum Credential {
    /// Temporary AWS credentials from STS.
    Aws(AwsCredential),
    /// A bearer token: a GCP access token, an Azure access token, or an internal JWT. Boxed: it is
    /// the larger kind, and every cached AWS credential would otherwise carry its size.
    Token(Box<AccessToken>),
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
            Credential::Aws(c) => c.access_key_id(),
            Credential::Token(t) => &t.id,
        }
    }
}

/// Temporary AWS credentials, kept as the one body that serves them: the container-credentials
/// JSON `{"AccessKeyId","SecretAccessKey","Token","Expiration","AccountId"}`, written once when
/// the credential arrives, in one allocation (zeroized on drop); each part is a slice of it. A
/// cached credential is then answered without serializing anything (the body is the same bytes
/// for every caller until it is refreshed), and costs one allocation instead of four.
pub struct AwsCredential {
    body: SecretString,
    access_key_id: Part,
    secret_access_key: Part,
    session_token: Part,
    account_id: Option<Part>,
    /// `Expiration` as STS returned it.
    pub expiration: SystemTime,
}

/// Where a part lies in the body.
#[derive(Clone, Copy)]
struct Part {
    start: u32,
    end: u32,
}

/// A part that cannot be written into JSON as it is (it would need escaping: STS never sends one).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} holds characters a credential never holds")]
pub struct UnusablePart(pub &'static str);

impl AwsCredential {
    /// The credential, its body written now. `account_id` is the account the credentials act in
    /// (from the ARN of the last hop's assumed-role session; the ARN itself is not kept: nothing
    /// reads it, and every cached credential would carry it).
    pub fn new(
        access_key_id: &str,
        secret_access_key: &str,
        session_token: &str,
        expiration: SystemTime,
        account_id: Option<&str>,
    ) -> Result<AwsCredential, UnusablePart> {
        let expires = rfc3339(expiration);
        let parts = [
            ("AccessKeyId", Some(access_key_id)),
            ("SecretAccessKey", Some(secret_access_key)),
            ("Token", Some(session_token)),
            ("Expiration", Some(expires.as_str())),
            ("AccountId", account_id),
        ];
        // Only characters JSON takes as they are, so that each part is a slice of the body; checked
        // before anything is written, so that no copy of a secret is left behind on refusal.
        if let Some((key, _)) = parts.iter().find(|(_, v)| {
            v.is_some_and(|v| v.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'))
        }) {
            return Err(UnusablePart(key));
        }
        // The exact size (`{`, then `"key":` and the value or `null` and `,` or `}` each): the
        // string is never reallocated, which would leave a copy of the secrets in freed memory.
        let size = 1 + parts
            .iter()
            .map(|(k, v)| k.len() + 4 + v.map_or(4, |v| v.len() + 2))
            .sum::<usize>();
        let mut body = String::with_capacity(size);
        let mut at = [None; 5];
        body.push('{');
        for (i, (key, value)) in parts.into_iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push('"');
            body.push_str(key);
            body.push_str("\":");
            let Some(value) = value else {
                body.push_str("null");
                continue;
            };
            body.push('"');
            let start = u32::try_from(body.len()).map_err(|_| UnusablePart(key))?;
            body.push_str(value);
            let end = u32::try_from(body.len()).map_err(|_| UnusablePart(key))?;
            body.push('"');
            at[i] = Some(Part { start, end });
        }
        body.push('}');
        debug_assert_eq!(body.len(), size);
        debug_assert_eq!(body.capacity(), size);
        let part = |i: usize| at[i].unwrap_or(Part { start: 0, end: 0 });
        Ok(AwsCredential {
            access_key_id: part(0),
            secret_access_key: part(1),
            session_token: part(2),
            account_id: at[4],
            expiration,
            body: SecretString::from(body),
        })
    }

    fn part(&self, part: Part) -> &str {
        self.body
            .expose_secret()
            .get(part.start as usize..part.end as usize)
            .unwrap_or("")
    }

    /// `AccessKeyId` (an identifier, not a secret, but still never logged whole).
    pub fn access_key_id(&self) -> &str {
        self.part(self.access_key_id)
    }

    /// `SecretAccessKey`.
    pub fn expose_secret_access_key(&self) -> &str {
        self.part(self.secret_access_key)
    }

    /// `SessionToken`.
    pub fn expose_session_token(&self) -> &str {
        self.part(self.session_token)
    }

    /// The account the credentials act in.
    pub fn account_id(&self) -> Option<&str> {
        self.account_id.map(|p| self.part(p))
    }

    /// The container-credentials answer every AWS SDK reads, secrets included.
    pub fn expose_container_body(&self) -> &str {
        self.body.expose_secret()
    }
}

impl std::fmt::Debug for AwsCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredential")
            .field("access_key_id", &self.access_key_id())
            .field("secret_access_key", &"[REDACTED]")
            .field("session_token", &"[REDACTED]")
            .field("expiration", &self.expiration)
            .field("account_id", &self.account_id())
            .finish()
    }
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

/// RFC 3339 in UTC with second precision, like AWS's `Expiration` (the one place stsbridge writes
/// it: the bridge uses it too).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Years past 9999 (four digits) are not times anyone will see; they get the epoch, like an
    // unrepresentable time.
    let Some(at) = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .filter(|at| at.year() <= 9999)
    else {
        return "1970-01-01T00:00:00Z".into();
    };
    // Written by hand: this runs two or three times per exchange, and the formatting machinery
    // of `time` costs several times more.
    let (hour, minute, second) = at.to_hms();
    let mut out = String::with_capacity(20);
    let parts = [
        (at.year().unsigned_abs(), 4, '-'),
        (u32::from(u8::from(at.month())), 2, '-'),
        (u32::from(at.day()), 2, 'T'),
        (u32::from(hour), 2, ':'),
        (u32::from(minute), 2, ':'),
        (u32::from(second), 2, 'Z'),
    ];
    for (value, digits, then) in parts {
        for i in (0..digits).rev() {
            out.push(char::from(b'0' + ((value / 10u32.pow(i)) % 10) as u8));
        }
        out.push(then);
    }
    out
}

/// The account id inside an ARN (`arn:partition:service:region:ACCOUNT:resource`), when it has one.
pub fn account_of_arn(arn: &str) -> Option<String> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then(|| account.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = AwsCredential::new(
            "ASIAEXAMPLE",
            "very-secret-key",
            "very-secret-token",
            SystemTime::UNIX_EPOCH,
            None,
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert_eq!(c.expose_secret_access_key(), "very-secret-key");
    }

    #[test]
    fn the_body_is_the_container_answer_and_every_part_a_slice_of_it() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let c = AwsCredential::new("ASIAX", "s/+=", "tok", at, Some("123456789012")).unwrap();
        assert_eq!(
            c.expose_container_body(),
            r#"{"AccessKeyId":"ASIAX","SecretAccessKey":"s/+=","Token":"tok","Expiration":"2023-11-14T22:13:20Z","AccountId":"123456789012"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(c.expose_container_body()).unwrap();
        assert_eq!(parsed["Token"], "tok");
        assert_eq!(
            (
                c.access_key_id(),
                c.expose_secret_access_key(),
                c.expose_session_token()
            ),
            ("ASIAX", "s/+=", "tok")
        );
        assert_eq!(c.account_id(), Some("123456789012"));
        let none = AwsCredential::new("A", "B", "C", at, None).unwrap();
        assert!(
            none.expose_container_body()
                .ends_with(r#""AccountId":null}"#)
        );
        assert_eq!(none.account_id(), None);
        // A part JSON would have to escape is refused, never written half-escaped.
        assert_eq!(
            AwsCredential::new("A", "B\"", "C", at, None).unwrap_err(),
            UnusablePart("SecretAccessKey")
        );
        assert!(AwsCredential::new("A", "B", "C\n", at, None).is_err());
    }
}
