//! One provider contract, run against every provider (in the style of rustls's per-provider test
//! modules): the same five promises for AWS, GCP, Azure, and the internal JWT issuer, each against
//! its own stand-in upstream.
//!
//! 1. Happy path: a request becomes a credential with one upstream call.
//! 2. Expiry honoured: the credential expires when the upstream says, not when we guess.
//! 3. Upstream rejection: a refusal comes back as `Rejected` with the upstream's own code.
//! 4. Throttled, then recovers: one throttled answer is retried within the budget.
//! 5. Upstream down: a cached credential that is still valid keeps being served (`stale`).
//!
//! The JWT provider has no remote upstream; its "upstream" is the signing key, which can refuse
//! (promise 3) or be unavailable (promise 5). Throttling does not apply to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use stsbridge::cache::{CacheEvent, CredentialCache};
use stsbridge::config::{IssuerConfig, SigningAlgorithm};
use stsbridge::issuer::Issuer;
use stsbridge_e2e::{clouds, sts};
use stsbridge_providers::aws::{AwsProvider, AwsSettings};
use stsbridge_providers::azure::{AzureProvider, AzureSettings};
use stsbridge_providers::gcp::{GcpProvider, GcpSettings};
use stsbridge_providers::jwt::JwtProvider;
use stsbridge_providers::request::AssertionSource;
use stsbridge_providers::rest::RestSettings;
use stsbridge_providers::{
    AssertionSigner, AwsRequest, AzureRequest, GcpRequest, JwtRequest, MintSpec, MintedAssertion,
    Provider, ProviderError, ProviderRequest, SignError,
};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// stsbridge's issuer, with a switch that makes it refuse to sign.
struct Signer {
    issuer: Issuer,
    refuse: AtomicBool,
    mints: AtomicUsize,
}

impl AssertionSigner for Signer {
    fn issuer(&self) -> &str {
        self.issuer.url()
    }
    fn mint(&self, spec: MintSpec<'_>, now: SystemTime) -> Result<MintedAssertion, SignError> {
        self.mints.fetch_add(1, Ordering::SeqCst);
        if self.refuse.load(Ordering::SeqCst) {
            return Err(SignError::NoKey);
        }
        self.issuer.mint(spec, now)
    }
}

fn signer() -> Arc<Signer> {
    let config = IssuerConfig {
        url: "https://stsbridge.test".into(),
        key_dir: None,
        algorithm: SigningAlgorithm::Es256,
        assertion_lifetime: Duration::from_secs(300),
        publish_before_use: Duration::from_secs(3600),
    };
    Arc::new(Signer {
        issuer: Issuer::load(&config).unwrap(),
        refuse: AtomicBool::new(false),
        mints: AtomicUsize::new(0),
    })
}

/// Quick retries: the contract is about behaviour, not waiting.
fn rest() -> RestSettings {
    RestSettings {
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..RestSettings::default()
    }
}

fn mint(subject: &str) -> AssertionSource {
    AssertionSource::Mint {
        subject: subject.into(),
    }
}

/// A provider with a controllable upstream.
trait Upstream: Sized {
    async fn start() -> Self;
    fn provider(&self) -> Arc<dyn Provider>;
    fn request(&self) -> ProviderRequest;
    /// From now on, answer with a credential valid for `lifetime`.
    async fn succeed(&self, lifetime: Duration);
    /// From now on, refuse.
    async fn refuse(&self);
    /// The code a refusal comes back with.
    fn refusal_code(&self) -> &'static str;
    /// Throttle the next request only (then whatever else is mounted answers).
    async fn throttle_once(&self);
    /// From now on, fail as if down.
    async fn go_down(&self);
    /// Requests the upstream received.
    async fn calls(&self) -> usize;
}

struct Http {
    server: MockServer,
    signer: Arc<Signer>,
}

impl Http {
    async fn start() -> Http {
        Http {
            server: MockServer::start().await,
            signer: signer(),
        }
    }
    async fn answer(&self, response: ResponseTemplate) {
        self.server.reset().await;
        Mock::given(method("POST"))
            .respond_with(response)
            .mount(&self.server)
            .await;
    }
    async fn answer_first(&self, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .respond_with(response)
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&self.server)
            .await;
    }
    async fn calls(&self) -> usize {
        self.server.received_requests().await.unwrap().len()
    }
}

struct AwsUpstream(Http);

impl Upstream for AwsUpstream {
    async fn start() -> Self {
        AwsUpstream(Http::start().await)
    }
    fn provider(&self) -> Arc<dyn Provider> {
        let settings = AwsSettings {
            endpoint: Some(self.0.server.uri()),
            ..AwsSettings::default()
        };
        Arc::new(AwsProvider::new(&settings, self.0.signer.clone()))
    }
    fn request(&self) -> ProviderRequest {
        ProviderRequest::Aws(AwsRequest {
            target: "contract".into(),
            assertion: mint("target:contract"),
            role_arn: "arn:aws:iam::111111111111:role/contract".into(),
            session_name: "contract".into(),
            duration: Duration::from_secs(3600),
            session_policy: None,
            tags: vec![],
            transitive_tag_keys: vec![],
            source_identity: None,
            chain: vec![],
        })
    }
    async fn succeed(&self, lifetime: Duration) {
        let expiration = stsbridge::audit::rfc3339(SystemTime::now() + lifetime);
        let xml = sts::web_identity_success(
            "arn:aws:sts::111111111111:assumed-role/contract/contract",
            "ASIACONTRACT00000001",
            "contract-secret-access-key-0000000000",
            "contract-session-token-00000000000000",
            &expiration,
        );
        self.0
            .answer(ResponseTemplate::new(200).set_body_string(xml))
            .await;
    }
    async fn refuse(&self) {
        self.0
            .answer(
                ResponseTemplate::new(403)
                    .set_body_string(sts::error("AccessDenied", "Not authorized")),
            )
            .await;
    }
    fn refusal_code(&self) -> &'static str {
        "AccessDenied"
    }
    async fn throttle_once(&self) {
        self.0
            .answer_first(
                ResponseTemplate::new(400)
                    .set_body_string(sts::error("Throttling", "Rate exceeded")),
            )
            .await;
    }
    async fn go_down(&self) {
        self.0.answer(ResponseTemplate::new(503)).await;
    }
    async fn calls(&self) -> usize {
        self.0.calls().await
    }
}

struct GcpUpstream(Http);

impl Upstream for GcpUpstream {
    async fn start() -> Self {
        GcpUpstream(Http::start().await)
    }
    fn provider(&self) -> Arc<dyn Provider> {
        let settings = GcpSettings {
            sts_endpoint: self.0.server.uri(),
            iamcredentials_endpoint: self.0.server.uri(),
            rest: rest(),
        };
        Arc::new(GcpProvider::new(&settings, self.0.signer.clone()).unwrap())
    }
    fn request(&self) -> ProviderRequest {
        let audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/prov";
        ProviderRequest::Gcp(GcpRequest {
            target: "contract".into(),
            assertion: mint("target:contract"),
            audience: audience.into(),
            assertion_audience: format!("https:{audience}"),
            scopes: vec!["https://www.googleapis.com/auth/cloud-platform".into()],
            service_account: None,
            lifetime: Duration::from_secs(3600),
            delegates: vec![],
        })
    }
    async fn succeed(&self, lifetime: Duration) {
        self.0
            .answer(clouds::gcp_sts_token(
                "contract-federated-token",
                lifetime.as_secs(),
            ))
            .await;
    }
    async fn refuse(&self) {
        self.0
            .answer(clouds::gcp_sts_error(
                400,
                "invalid_grant",
                "The audience in ID Token does not match",
            ))
            .await;
    }
    fn refusal_code(&self) -> &'static str {
        "invalid_grant"
    }
    async fn throttle_once(&self) {
        self.0.answer_first(ResponseTemplate::new(429)).await;
    }
    async fn go_down(&self) {
        self.0.answer(ResponseTemplate::new(503)).await;
    }
    async fn calls(&self) -> usize {
        self.0.calls().await
    }
}

struct AzureUpstream(Http);

impl Upstream for AzureUpstream {
    async fn start() -> Self {
        AzureUpstream(Http::start().await)
    }
    fn provider(&self) -> Arc<dyn Provider> {
        let settings = AzureSettings {
            authority_host: self.0.server.uri(),
            rest: rest(),
        };
        Arc::new(AzureProvider::new(&settings, self.0.signer.clone()).unwrap())
    }
    fn request(&self) -> ProviderRequest {
        ProviderRequest::Azure(AzureRequest {
            target: "contract".into(),
            assertion: mint("target:contract"),
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            client_id: "3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c".into(),
            scope: "https://storage.azure.com/.default".into(),
        })
    }
    async fn succeed(&self, lifetime: Duration) {
        self.0
            .answer(clouds::entra_token(
                "contract-entra-token",
                lifetime.as_secs(),
            ))
            .await;
    }
    async fn refuse(&self) {
        self.0
            .answer(clouds::entra_error(
                401,
                "invalid_client",
                70021,
                "No matching federated identity record found.",
            ))
            .await;
    }
    fn refusal_code(&self) -> &'static str {
        "AADSTS70021"
    }
    async fn throttle_once(&self) {
        self.0.answer_first(ResponseTemplate::new(429)).await;
    }
    async fn go_down(&self) {
        self.0.answer(ResponseTemplate::new(503)).await;
    }
    async fn calls(&self) -> usize {
        self.0.calls().await
    }
}

/// The JWT provider's upstream is stsbridge's own signing key.
struct JwtUpstream {
    signer: Arc<Signer>,
    lifetime: std::sync::Mutex<Duration>,
}

impl Upstream for JwtUpstream {
    async fn start() -> Self {
        JwtUpstream {
            signer: signer(),
            lifetime: std::sync::Mutex::new(Duration::from_secs(300)),
        }
    }
    fn provider(&self) -> Arc<dyn Provider> {
        Arc::new(JwtProvider::new(self.signer.clone()))
    }
    fn request(&self) -> ProviderRequest {
        ProviderRequest::Jwt(JwtRequest {
            target: "contract".into(),
            audience: "contract-api".into(),
            subject: "svc:contract".into(),
            scopes: vec!["read".into()],
            lifetime: *self.lifetime.lock().unwrap(),
            act: None,
        })
    }
    async fn succeed(&self, lifetime: Duration) {
        *self.lifetime.lock().unwrap() = lifetime;
        self.signer.refuse.store(false, Ordering::SeqCst);
    }
    async fn refuse(&self) {
        self.signer.refuse.store(true, Ordering::SeqCst);
    }
    fn refusal_code(&self) -> &'static str {
        "assertion_failed"
    }
    async fn throttle_once(&self) {}
    async fn go_down(&self) {
        self.signer.refuse.store(true, Ordering::SeqCst);
    }
    async fn calls(&self) -> usize {
        self.signer.mints.load(Ordering::SeqCst)
    }
}

async fn happy_path<U: Upstream>() {
    let upstream = U::start().await;
    upstream.succeed(Duration::from_secs(3600)).await;
    let issued = upstream
        .provider()
        .fetch(&upstream.request(), SystemTime::now())
        .await
        .unwrap();
    assert!(!issued.credential.public_id().is_empty());
    assert_eq!(upstream.calls().await, 1);
}

async fn expiry_honoured<U: Upstream>() {
    let upstream = U::start().await;
    upstream.succeed(Duration::from_secs(1234)).await;
    let now = SystemTime::now();
    let issued = upstream
        .provider()
        .fetch(&upstream.request(), now)
        .await
        .unwrap();
    let lifetime = issued
        .credential
        .expires_at()
        .duration_since(now)
        .unwrap_or_default()
        .as_secs();
    assert!(
        (1233..=1235).contains(&lifetime),
        "the upstream said 1234 s, the credential says {lifetime} s"
    );
}

async fn upstream_rejection<U: Upstream>() {
    let upstream = U::start().await;
    upstream.refuse().await;
    let err = upstream
        .provider()
        .fetch(&upstream.request(), SystemTime::now())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), upstream.refusal_code(), "{err:?}");
    if !matches!(err, ProviderError::Assertion(_)) {
        assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
        assert_eq!(upstream.calls().await, 1, "a refusal is not retried");
    }
}

async fn throttled_then_recovers<U: Upstream>() {
    let upstream = U::start().await;
    upstream.succeed(Duration::from_secs(3600)).await;
    upstream.throttle_once().await;
    let issued = upstream
        .provider()
        .fetch(&upstream.request(), SystemTime::now())
        .await;
    assert!(issued.is_ok(), "{issued:?}");
    assert_eq!(upstream.calls().await, 2, "one throttled answer, one retry");
}

async fn down_with_a_cached_credential_still_served<U: Upstream>() {
    let upstream = U::start().await;
    upstream.succeed(Duration::from_secs(600)).await;
    let cache = CredentialCache::new(10, vec![upstream.provider()]);
    let key = Arc::new(upstream.request());
    let t0 = SystemTime::now();
    let (first, event) = cache.get(Arc::clone(&key), t0).await.unwrap();
    assert_eq!(event, CacheEvent::Miss);
    upstream.go_down().await;
    // Past the serving window (the last fifth of 10 minutes), well before expiry.
    let (served, event) = cache
        .get(Arc::clone(&key), t0 + Duration::from_secs(500))
        .await
        .unwrap();
    assert_eq!(event, CacheEvent::Stale);
    assert_eq!(served.credential.public_id(), first.credential.public_id());
}

macro_rules! contract {
    ($name:ident, $upstream:ty $(, $case:ident)*) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case::<$upstream>().await;
                }
            )*
        }
    };
}

contract!(
    aws,
    super::AwsUpstream,
    happy_path,
    expiry_honoured,
    upstream_rejection,
    throttled_then_recovers,
    down_with_a_cached_credential_still_served
);
contract!(
    gcp,
    super::GcpUpstream,
    happy_path,
    expiry_honoured,
    upstream_rejection,
    throttled_then_recovers,
    down_with_a_cached_credential_still_served
);
contract!(
    azure,
    super::AzureUpstream,
    happy_path,
    expiry_honoured,
    upstream_rejection,
    throttled_then_recovers,
    down_with_a_cached_credential_still_served
);
contract!(
    jwt,
    super::JwtUpstream,
    happy_path,
    expiry_honoured,
    upstream_rejection,
    down_with_a_cached_credential_still_served
);
