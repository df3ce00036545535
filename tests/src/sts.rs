//! AWS STS wire formats (query protocol, XML answers) for wiremock stand-ins: a wire-exact matcher
//! of `AssumeRoleWithWebIdentity`, its success body, and the `ErrorResponse` every STS error comes
//! in; and a stand-in that holds its answers until the test releases them ([`HeldSts`]).

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

/// An STS stand-in that holds the answer to every `AssumeRoleWithWebIdentity` whose `RoleArn` ends
/// with a given suffix until the test releases it, and answers the others at once: the way to see
/// what is in flight at the upstream, with no timing. Each answer's access key id ends with the
/// request's arrival number (`ASIASTANDIN000000001` for the first).
pub struct HeldSts {
    /// Its URL (`http://127.0.0.1:PORT`).
    pub url: String,
    state: std::sync::Arc<HeldState>,
}

struct HeldState {
    held_suffix: String,
    roles: std::sync::Mutex<Vec<String>>,
    arrived: tokio::sync::Notify,
    released: tokio::sync::watch::Sender<bool>,
}

/// How long a held request waits for its release before it is answered 500 (and the test that
/// forgot to release it fails on that).
const HOLD_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

impl HeldSts {
    /// Starts the stand-in on 127.0.0.1, holding the roles that end with `held_suffix` (`""`:
    /// every role).
    pub async fn start(held_suffix: &str) -> HeldSts {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind STS stand-in");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = std::sync::Arc::new(HeldState {
            held_suffix: held_suffix.to_owned(),
            roles: std::sync::Mutex::new(Vec::new()),
            arrived: tokio::sync::Notify::new(),
            released: tokio::sync::watch::channel(false).0,
        });
        let app = axum::Router::new()
            .route("/", axum::routing::post(held_answer))
            .with_state(std::sync::Arc::clone(&state));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HeldSts { url, state }
    }

    /// The `RoleArn` of every request so far, in order of arrival.
    pub fn roles(&self) -> Vec<String> {
        self.state.roles.lock().expect("lock").clone()
    }

    /// Waits until at least `n` requests have arrived; panics after `timeout` naming `what`.
    pub async fn wait_for_arrivals(&self, n: usize, timeout: std::time::Duration, what: &str) {
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let notified = self.state.arrived.notified();
                if self.roles().len() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{what}: {} of {n} requests reached the STS stand-in",
            self.roles().len()
        );
    }

    /// Answers every held request, and every later one at once.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }
}

async fn held_answer(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<HeldState>>,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let role = crate::clouds::parse_form(body.as_bytes())
        .remove("RoleArn")
        .unwrap_or_default();
    let n = {
        let mut roles = state.roles.lock().expect("lock");
        roles.push(role.clone());
        roles.len()
    };
    state.arrived.notify_waiters();
    if role.ends_with(&state.held_suffix) {
        let mut released = state.released.subscribe();
        let waited = tokio::time::timeout(HOLD_LIMIT, released.wait_for(|r| *r)).await;
        if !matches!(waited, Ok(Ok(_))) {
            return (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "never released",
            )
                .into_response();
        }
    }
    let expiration = stsbridge::audit::rfc3339(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    );
    (
        [("content-type", "text/xml")],
        web_identity_success(
            "arn:aws:sts::111111111111:assumed-role/stand-in/held",
            &format!("ASIASTANDIN{n:09}"),
            &format!("stand-in-secret-access-key-{n:020}"),
            &format!("stand-in-session-token-{n:040}"),
            &expiration,
        ),
    )
        .into_response()
}
