//! A test identity provider: an RSA key generated at test time, OIDC discovery and JWKS served on
//! 127.0.0.1, and tokens minted on demand. It can rotate its key and go down, to exercise JWKS
//! refresh and the last-good-key-set behaviour.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use stsbridge::config::SigningAlgorithm;
use stsbridge::issuer::SigningKey;

struct IdpState {
    issuer: String,
    keys: RwLock<Vec<Arc<SigningKey>>>,
    up: AtomicBool,
    jwks_fetches: AtomicUsize,
    serial: AtomicUsize,
}

/// A running test IdP. Its server stops when the test's runtime ends.
pub struct TestIdp {
    /// Its issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
    state: Arc<IdpState>,
}

fn new_key() -> Arc<SigningKey> {
    Arc::new(
        SigningKey::generate(SigningAlgorithm::Rs256)
            .expect("keygen")
            .0,
    )
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl TestIdp {
    /// Starts the IdP on 127.0.0.1 and a port from the OS.
    pub async fn start() -> TestIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test IdP");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(IdpState {
            issuer: issuer.clone(),
            keys: RwLock::new(vec![new_key()]),
            up: AtomicBool::new(true),
            jwks_fetches: AtomicUsize::new(0),
            serial: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestIdp { issuer, state }
    }

    /// A token for `sub` with the usual registered claims (10 minutes, our audience, a fresh
    /// `jti`), overlaid with `extra`; a `null` in `extra` removes that claim.
    pub fn token(&self, sub: &str, extra: Value) -> String {
        let mut claims = self.claims(sub);
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                if v.is_null() {
                    claims.as_object_mut().expect("object").remove(&k);
                } else {
                    claims[k] = v;
                }
            }
        }
        self.sign(&claims)
    }

    /// Signs arbitrary claims with the current key.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": "RS256", "kid": self.kid(), "typ": "JWT" });
        self.sign_parts(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    /// Signs a header and claims given as raw bytes (so tests can build tokens no library would).
    pub fn sign_parts(&self, header: &[u8], claims: &[u8]) -> String {
        let key = Arc::clone(self.state.keys.read().expect("lock").last().expect("a key"));
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = key.sign(input.as_bytes()).expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The current key's id.
    pub fn kid(&self) -> String {
        self.state
            .keys
            .read()
            .expect("lock")
            .last()
            .expect("a key")
            .kid()
            .to_owned()
    }

    /// The current key's public JWK.
    pub fn public_jwk(&self) -> Value {
        self.state
            .keys
            .read()
            .expect("lock")
            .last()
            .expect("a key")
            .public_jwk()
            .clone()
    }

    /// The usual claims of [`token`](Self::token) (10 minutes, our audience, a fresh `jti`).
    pub fn claims(&self, sub: &str) -> Value {
        let now = unix_now();
        let n = self.state.serial.fetch_add(1, Ordering::SeqCst);
        json!({
            "iss": self.issuer, "sub": sub, "aud": crate::BRIDGE_URL,
            "iat": now, "exp": now + 600, "jti": format!("jti-{n}-{now}"),
        })
    }

    /// Replaces the signing key with a new one (the old one is no longer published).
    pub fn rotate(&self) {
        *self.state.keys.write().expect("lock") = vec![new_key()];
    }

    /// Makes discovery and JWKS answer 503 (`false`) or work again (`true`).
    pub fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }
}

async fn discovery(State(state): State<Arc<IdpState>>) -> Response {
    if !state.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(json!({ "issuer": state.issuer, "jwks_uri": format!("{}/jwks", state.issuer) }))
        .into_response()
}

async fn jwks(State(state): State<Arc<IdpState>>) -> Response {
    if !state.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = state
        .keys
        .read()
        .expect("lock")
        .iter()
        .map(|k| k.public_jwk().clone())
        .collect();
    axum::Json(json!({ "keys": keys })).into_response()
}
