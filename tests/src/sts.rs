//! AWS STS wire formats (query protocol, XML answers) for wiremock stand-ins: a wire-exact matcher
//! of `AssumeRoleWithWebIdentity`, its success body, and the `ErrorResponse` every STS error comes
//! in.

use wiremock::{Match, Request};

use crate::clouds::{all, form, header, is_jwt};

/// `POST /` with `Action=AssumeRoleWithWebIdentity`, as the STS API reference documents it: an
/// unsigned query-protocol form with exactly these parameters.
pub struct AssumeRoleWithWebIdentity {
    /// Expected `RoleArn`.
    pub role_arn: String,
    /// Expected `RoleSessionName`.
    pub session_name: String,
    /// Expected `DurationSeconds`.
    pub duration_seconds: u64,
    /// Expected `Policy`, when one is sent.
    pub policy: Option<String>,
}

impl Match for AssumeRoleWithWebIdentity {
    fn matches(&self, request: &Request) -> bool {
        let f = form(request);
        let field = |k: &str| f.get(k).map(String::as_str);
        let mut known = vec![
            "Action",
            "Version",
            "RoleArn",
            "RoleSessionName",
            "WebIdentityToken",
            "DurationSeconds",
        ];
        if self.policy.is_some() {
            known.push("Policy");
        }
        all(
            "AWS STS",
            &[
                ("method POST", request.method.as_str() == "POST"),
                ("path /", request.url.path() == "/"),
                (
                    "content type",
                    header(request, "content-type") == Some("application/x-www-form-urlencoded"),
                ),
                (
                    "unsigned (no Authorization)",
                    header(request, "authorization").is_none(),
                ),
                (
                    "Action",
                    field("Action") == Some("AssumeRoleWithWebIdentity"),
                ),
                ("Version", field("Version") == Some("2011-06-15")),
                ("RoleArn", field("RoleArn") == Some(self.role_arn.as_str())),
                (
                    "RoleSessionName",
                    field("RoleSessionName") == Some(self.session_name.as_str()),
                ),
                (
                    "DurationSeconds",
                    field("DurationSeconds") == Some(self.duration_seconds.to_string().as_str()),
                ),
                ("Policy", field("Policy") == self.policy.as_deref()),
                (
                    "WebIdentityToken is a JWT",
                    is_jwt(f.get("WebIdentityToken")),
                ),
                (
                    "no other parameter",
                    f.keys().all(|k| known.contains(&k.as_str())),
                ),
            ],
        )
    }
}

/// The documented success response of `AssumeRoleWithWebIdentity`.
pub fn web_identity_success(
    arn: &str,
    access_key_id: &str,
    secret: &str,
    session_token: &str,
    expiration: &str,
) -> String {
    format!(
        r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>stand-in</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>{arn}</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:session</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{session_token}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>{access_key_id}</AccessKeyId>
    </Credentials>
    <SourceIdentity>stand-in</SourceIdentity>
    <Provider>stsbridge.test</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#
    )
}

/// The documented error response of every STS action.
pub fn error(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>{code}</Code>
    <Message>{message}</Message>
  </Error>
  <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
</ErrorResponse>"#
    )
}

/// The text of every `<tag>` element of an STS answer, in order (`SessionToken`,
/// `SecretAccessKey`...); moto's answers carry no attributes on these and no CDATA.
pub fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&open) {
        rest = &rest[at + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        values.push(rest[..end].to_owned());
        rest = &rest[end + close.len()..];
    }
    values
}
