//! What the load driver serves: a stand-in STS with a configurable latency
//! that counts its calls, and the two reference servers (the HTTP ceiling and the verify ceiling),
//! which run in their own process on the server's CPU exactly like stsbridge.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::net::TcpListener;

/// The stand-in STS: answers every `AssumeRoleWithWebIdentity` after `latency`, with a credential
/// of real AWS proportions (an 800-character session token), and counts the calls.
#[derive(Default)]
pub struct Sts {
    calls: AtomicUsize,
    latency_ms: AtomicU64,
}

impl Sts {
    /// Calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Sets the latency of the answers from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }
}

/// Starts the stand-in STS on 127.0.0.1; returns its URL.
pub async fn sts(state: Arc<Sts>) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = Router::new().route("/", post(assume)).with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

async fn assume(State(sts): State<Arc<Sts>>, body: String) -> Response {
    let n = sts.calls.fetch_add(1, Ordering::SeqCst);
    if !body.contains("Action=AssumeRoleWithWebIdentity") {
        return (StatusCode::BAD_REQUEST, "only AssumeRoleWithWebIdentity").into_response();
    }
    let latency = sts.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let expiration = stsbridge::audit::rfc3339(SystemTime::now() + Duration::from_secs(3600));
    let body = format!(
        r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>bench</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/bench/session-{n}</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:session-{n}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>FwoGZXIvYXdzE{n:0>787}</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCY{n:0>10}</SecretAccessKey>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>ASIA{n:0>16}</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-{n:0>12}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#
    );
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// Which reference server.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// Answers the fixed body: what axum and the kernel cost, nothing else.
    Http,
    /// Verifies the bearer token's RS256 signature with a key parsed once, then answers the body.
    Verify,
}

struct RefState {
    body: Arc<[u8]>,
    key: Option<ParsedPublicKey>,
}

/// Runs a reference server until killed: binds 127.0.0.1:0 and says where on stderr, the way
/// stsbridge does. `body` is the exact body stsbridge answers; `rsa` the IdP key's `n` and `e`.
pub async fn reference(
    kind: Reference,
    body: Vec<u8>,
    rsa: (Vec<u8>, Vec<u8>),
) -> std::io::Result<()> {
    let key = match kind {
        Reference::Http => None,
        Reference::Verify => {
            let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
                &RsaPublicKeyComponents {
                    n: &rsa.0,
                    e: &rsa.1,
                },
            )
            .map_err(|_| std::io::Error::other("bad RSA key"))?;
            Some(
                ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_ref())
                    .map_err(|_| std::io::Error::other("bad RSA key"))?,
            )
        }
    };
    let state = Arc::new(RefState {
        body: body.into(),
        key,
    });
    let app = Router::new()
        .route("/v1/credentials/{target}", get(answer))
        .with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    eprintln!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}

async fn answer(State(state): State<Arc<RefState>>, headers: HeaderMap) -> Response {
    if let Some(key) = &state.key {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let Some((input, signature)) = token.rsplit_once('.') else {
            return StatusCode::UNAUTHORIZED.into_response();
        };
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return StatusCode::UNAUTHORIZED.into_response();
        };
        if key.verify_sig(input.as_bytes(), &signature).is_err() {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Bytes::copy_from_slice(&state.body),
    )
        .into_response()
}
