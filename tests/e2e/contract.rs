//! One provider contract, run against every provider (in the style of rustls's per-provider test
//! modules): the same five promises for AWS, GCP (federated, and with impersonation), Azure, and
//! the internal JWT issuer, each against its own stand-in upstream.
//!
//! 1. Happy path: a request becomes exactly the credential the upstream answered (ids, secrets,
//!    expiry), with one upstream call per step. The stand-ins of the happy path are wire-exact
//!    (the matchers of the per-cloud tests): a request that misses a documented field gets no
//!    answer.
//! 2. Expiry honoured: the credential expires when the upstream says, not when we guess.
//! 3. Upstream rejection: a refusal comes back as `Rejected` with the upstream's own code.
//! 4. Throttled, then recovers: one throttled answer is retried within the budget.
//! 5. Upstream down: a cached credential that is still valid keeps being served (`stale`).
//!
//! The JWT provider has no remote upstream; its "upstream" is the signing key, which can refuse
//! (promise 3) or be unavailable (promise 5). Throttling does not apply to it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;

use stsbridge::audit::rfc3339;
use stsbridge::cache::{CacheEvent, CredentialCache};
use stsbridge::config::{IssuerConfig, SigningAlgorithm};
use stsbridge::issuer::Issuer;
use stsbridge_e2e::{clouds, sts};
use stsbridge_providers::aws::{AwsProvider, AwsSettings};
use stsbridge_providers::azure::{AzureProvider, AzureSettings};
use stsbridge_providers::gcp::{GcpProvider, GcpSettings};
use stsbridge_providers::jwt::JwtProvider;
use stsbridge_providers::request::AssertionSource;
use stsbridge_providers::rest::{RestSettings, fingerprint};
use stsbridge_providers::{
    AssertionSigner, AwsRequest, AzureRequest, Credential, GcpRequest, Issued, JwtRequest,
    MintSpec, MintedAssertion, ProviderError, ProviderRequest, Providers, SignError,
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
    fn provider(&self) -> Providers;
    fn request(&self) -> ProviderRequest;
    /// From now on, answer the documented requests for [`Upstream::request`], and only those,
    /// with a credential valid for `lifetime`.
    async fn succeed(&self, lifetime: Duration);
    /// Fails the test unless `issued`, fetched at `now` after [`Upstream::succeed`], is exactly
    /// the credential the upstream answered.
    fn assert_answered(&self, issued: &Issued, now: SystemTime);
    /// Upstream requests one fetch makes (one per step of the exchange).
    fn calls_per_fetch(&self) -> usize {
        1
    }
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
    /// The lifetime of the last successful answer.
    lifetime: Mutex<Duration>,
    /// The expiry time the last successful answer gave, when it gives a time (RFC 3339).
    expiration: Mutex<String>,
}

impl Http {
    async fn start() -> Http {
        Http {
            server: MockServer::start().await,
            signer: signer(),
            lifetime: Mutex::new(Duration::ZERO),
            expiration: Mutex::new(String::new()),
        }
    }
    /// Remembers `lifetime` and returns the expiry time it gives from now, for an answer.
    fn answer_for(&self, lifetime: Duration) -> String {
        let expiration = rfc3339(SystemTime::now() + lifetime);
        *self.lifetime.lock().unwrap() = lifetime;
        self.expiration.lock().unwrap().clone_from(&expiration);
        expiration
    }
    fn lifetime(&self) -> Duration {
        *self.lifetime.lock().unwrap()
    }
    fn expiration(&self) -> String {
        self.expiration.lock().unwrap().clone()
    }
    async fn answer(&self, response: ResponseTemplate) {
        self.server.reset().await;
        Mock::given(method("POST"))
            .respond_with(response)
            .mount(&self.server)
            .await;
    }
    /// From now on, answer only what the wire-exact `mocks` accept.
    async fn answer_exactly(&self, mocks: Vec<Mock>) {
        self.server.reset().await;
        for mock in mocks {
            mock.mount(&self.server).await;
        }
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

/// Fails the test unless `issued` is the bearer token `token` as a REST upstream answers it,
/// granted `scope`; returns its expiry for the caller to compare.
fn token_as_answered(issued: &Issued, token: &str, scope: &str) -> SystemTime {
    let Credential::Token(t) = &issued.credential else {
        panic!("a token was expected: {:?}", issued.credential);
    };
    assert_eq!(t.token.expose_secret(), token);
    assert_eq!(
        t.id,
        fingerprint(token),
        "the id is the token's fingerprint"
    );
    assert_eq!(
        t.issued_token_type,
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(t.token_type, "Bearer");
    assert_eq!(t.scope.as_deref(), Some(scope));
    t.expires_at
}

const AWS_ROLE: &str = "arn:aws:iam::111111111111:role/contract";
const AWS_KEY_ID: &str = "ASIACONTRACT00000001";
const AWS_SECRET: &str = "contract-secret-access-key-0000000000";
const AWS_SESSION_TOKEN: &str = "contract-session-token-00000000000000";

struct AwsUpstream(Http);

impl Upstream for AwsUpstream {
    async fn start() -> Self {
        AwsUpstream(Http::start().await)
    }
    fn provider(&self) -> Providers {
        let settings = AwsSettings {
            endpoint: Some(self.0.server.uri()),
            ..AwsSettings::default()
        };
        Providers::default().aws(Arc::new(AwsProvider::new(&settings, self.0.signer.clone())))
    }
    fn request(&self) -> ProviderRequest {
        ProviderRequest::Aws(AwsRequest {
            target: "contract".into(),
            assertion: mint("target:contract"),
            role_arn: AWS_ROLE.into(),
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
        let xml = sts::web_identity_success(
            "arn:aws:sts::111111111111:assumed-role/contract/contract",
            AWS_KEY_ID,
            AWS_SECRET,
            AWS_SESSION_TOKEN,
            &self.0.answer_for(lifetime),
        );
        let matcher = sts::AssumeRoleWithWebIdentity {
            role_arn: AWS_ROLE.into(),
            session_name: "contract".into(),
            duration_seconds: 3600,
            policy: None,
        };
        self.0
            .answer_exactly(vec![
                Mock::given(matcher).respond_with(ResponseTemplate::new(200).set_body_string(xml)),
            ])
            .await;
    }
    fn assert_answered(&self, issued: &Issued, _now: SystemTime) {
        let Credential::Aws(c) = &issued.credential else {
            panic!("AWS credentials were expected: {:?}", issued.credential);
        };
        assert_eq!(c.access_key_id(), AWS_KEY_ID, "AccessKeyId");
        assert_eq!(c.expose_secret_access_key(), AWS_SECRET, "SecretAccessKey");
        assert_eq!(c.expose_session_token(), AWS_SESSION_TOKEN, "SessionToken");
        assert_eq!(rfc3339(c.expiration), self.0.expiration(), "Expiration");
        assert_eq!(
            c.account_id(),
            Some("111111111111"),
            "the account of the assumed role's ARN"
        );
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

const GCP_AUDIENCE: &str =
    "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/prov";
const GCP_FEDERATED_TOKEN: &str = "contract-federated-token";
const GCP_IMPERSONATED_TOKEN: &str = "ya29.contract-impersonated-token";
const GCP_SA: &str = "contract@project.iam.gserviceaccount.com";
const GCP_SA_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";

/// Google's STS, and with a service account the IAM credentials API too.
struct GcpUpstream {
    http: Http,
    service_account: Option<&'static str>,
}

/// The federated token itself.
struct GcpFederated(GcpUpstream);
/// The token of a service account impersonated with the federated token.
struct GcpImpersonation(GcpUpstream);

impl GcpUpstream {
    async fn start(service_account: Option<&'static str>) -> Self {
        GcpUpstream {
            http: Http::start().await,
            service_account,
        }
    }
    fn provider(&self) -> Providers {
        let settings = GcpSettings {
            sts_endpoint: self.http.server.uri(),
            iamcredentials_endpoint: self.http.server.uri(),
            rest: rest(),
        };
        Providers::default().gcp(Arc::new(
            GcpProvider::new(&settings, self.http.signer.clone()).unwrap(),
        ))
    }
    fn scope(&self) -> &'static str {
        match self.service_account {
            None => stsbridge_providers::gcp::CLOUD_PLATFORM,
            Some(_) => GCP_SA_SCOPE,
        }
    }
    fn request(&self) -> ProviderRequest {
        ProviderRequest::Gcp(GcpRequest {
            target: "contract".into(),
            assertion: mint("target:contract"),
            audience: GCP_AUDIENCE.into(),
            assertion_audience: format!("https:{GCP_AUDIENCE}"),
            scopes: vec![self.scope().into()],
            service_account: self.service_account.map(str::to_owned),
            lifetime: Duration::from_secs(1800),
            delegates: vec![],
        })
    }
    async fn succeed(&self, lifetime: Duration) {
        let expiration = self.http.answer_for(lifetime);
        // The exchange asks for cloud-platform when the token is only used to impersonate.
        let exchange = clouds::GcpStsExchange {
            audience: GCP_AUDIENCE.into(),
            scope: stsbridge_providers::gcp::CLOUD_PLATFORM.into(),
        };
        let mocks = match self.service_account {
            None => vec![Mock::given(exchange).respond_with(clouds::gcp_sts_token(
                GCP_FEDERATED_TOKEN,
                lifetime.as_secs(),
            ))],
            Some(email) => vec![
                // The federated token's own lifetime differs from the service account token's:
                // the credential must carry the latter.
                Mock::given(exchange)
                    .respond_with(clouds::gcp_sts_token(GCP_FEDERATED_TOKEN, 3599)),
                Mock::given(clouds::GenerateAccessToken {
                    email: email.into(),
                    bearer: GCP_FEDERATED_TOKEN.into(),
                    scopes: vec![GCP_SA_SCOPE.into()],
                    lifetime: "1800s".into(),
                })
                .respond_with(clouds::gcp_access_token(
                    GCP_IMPERSONATED_TOKEN,
                    &expiration,
                )),
            ],
        };
        self.http.answer_exactly(mocks).await;
    }
    fn assert_answered(&self, issued: &Issued, now: SystemTime) {
        match self.service_account {
            // expires_in counts from the exchange.
            None => assert_eq!(
                token_as_answered(issued, GCP_FEDERATED_TOKEN, self.scope()),
                now + self.http.lifetime(),
                "expires_in of the exchange"
            ),
            Some(_) => assert_eq!(
                rfc3339(token_as_answered(
                    issued,
                    GCP_IMPERSONATED_TOKEN,
                    self.scope()
                )),
                self.http.expiration(),
                "expireTime of generateAccessToken"
            ),
        }
    }
    fn calls_per_fetch(&self) -> usize {
        1 + usize::from(self.service_account.is_some())
    }
    async fn refuse(&self) {
        match self.service_account {
            None => {
                self.http
                    .answer(clouds::gcp_sts_error(
                        400,
                        "invalid_grant",
                        "The audience in ID Token does not match",
                    ))
                    .await;
            }
            // The exchange succeeds; the service account refuses to be impersonated.
            Some(_) => {
                self.http.server.reset().await;
                Mock::given(wiremock::matchers::path("/v1/token"))
                    .respond_with(clouds::gcp_sts_token(GCP_FEDERATED_TOKEN, 3599))
                    .mount(&self.http.server)
                    .await;
                Mock::given(wiremock::matchers::path_regex(":generateAccessToken$"))
                    .respond_with(clouds::google_api_error(
                        403,
                        "PERMISSION_DENIED",
                        "Permission 'iam.serviceAccounts.getAccessToken' denied",
                    ))
                    .mount(&self.http.server)
                    .await;
            }
        }
    }
    fn refusal_code(&self) -> &'static str {
        match self.service_account {
            None => "invalid_grant",
            Some(_) => "PERMISSION_DENIED",
        }
    }
    async fn throttle_once(&self) {
        self.http.answer_first(ResponseTemplate::new(429)).await;
    }
    async fn go_down(&self) {
        self.http.answer(ResponseTemplate::new(503)).await;
    }
    async fn calls(&self) -> usize {
        self.http.calls().await
    }
}

/// Both GCP flavours are the same upstream with or without a service account.
macro_rules! gcp_upstream {
    ($name:ident, $service_account:expr) => {
        impl Upstream for $name {
            async fn start() -> Self {
                $name(GcpUpstream::start($service_account).await)
            }
            fn provider(&self) -> Providers {
                self.0.provider()
            }
            fn request(&self) -> ProviderRequest {
                self.0.request()
            }
            async fn succeed(&self, lifetime: Duration) {
                self.0.succeed(lifetime).await
            }
            fn assert_answered(&self, issued: &Issued, now: SystemTime) {
                self.0.assert_answered(issued, now)
            }
            fn calls_per_fetch(&self) -> usize {
                self.0.calls_per_fetch()
            }
            async fn refuse(&self) {
                self.0.refuse().await
            }
            fn refusal_code(&self) -> &'static str {
                self.0.refusal_code()
            }
            async fn throttle_once(&self) {
                self.0.throttle_once().await
            }
            async fn go_down(&self) {
                self.0.go_down().await
            }
            async fn calls(&self) -> usize {
                self.0.calls().await
            }
        }
    };
}
gcp_upstream!(GcpFederated, None);
gcp_upstream!(GcpImpersonation, Some(GCP_SA));

const AZURE_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AZURE_CLIENT: &str = "3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c";
const AZURE_SCOPE: &str = "https://storage.azure.com/.default";
const AZURE_TOKEN: &str = "contract-entra-token";

struct AzureUpstream(Http);

impl Upstream for AzureUpstream {
    async fn start() -> Self {
        AzureUpstream(Http::start().await)
    }
    fn provider(&self) -> Providers {
        let settings = AzureSettings {
            authority_host: self.0.server.uri(),
            rest: rest(),
        };
        Providers::default().azure(Arc::new(
            AzureProvider::new(&settings, self.0.signer.clone()).unwrap(),
        ))
    }
    fn request(&self) -> ProviderRequest {
        ProviderRequest::Azure(AzureRequest {
            target: "contract".into(),
            assertion: mint("target:contract"),
            tenant_id: AZURE_TENANT.into(),
            client_id: AZURE_CLIENT.into(),
            scope: AZURE_SCOPE.into(),
        })
    }
    async fn succeed(&self, lifetime: Duration) {
        self.0.answer_for(lifetime);
        let matcher = clouds::EntraClientAssertion {
            tenant: AZURE_TENANT.into(),
            client_id: AZURE_CLIENT.into(),
            scope: AZURE_SCOPE.into(),
        };
        self.0
            .answer_exactly(vec![
                Mock::given(matcher)
                    .respond_with(clouds::entra_token(AZURE_TOKEN, lifetime.as_secs())),
            ])
            .await;
    }
    fn assert_answered(&self, issued: &Issued, now: SystemTime) {
        assert_eq!(
            token_as_answered(issued, AZURE_TOKEN, AZURE_SCOPE),
            now + self.0.lifetime(),
            "expires_in of the answer"
        );
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
    fn provider(&self) -> Providers {
        Providers::default().jwt(Arc::new(JwtProvider::new(self.signer.clone())))
    }
    fn request(&self) -> ProviderRequest {
        ProviderRequest::Jwt(JwtRequest {
            cnf: None,
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
    fn assert_answered(&self, issued: &Issued, now: SystemTime) {
        let Credential::Token(t) = &issued.credential else {
            panic!("a token was expected: {:?}", issued.credential);
        };
        let jwks = serde_json::from_str(&self.signer.issuer.jwks_json()).unwrap();
        let claims = crate::verify_with_jwks(&jwks, t.token.expose_secret(), "contract-api");
        let iat = stsbridge::token::unix_seconds(now);
        let exp = iat + self.lifetime.lock().unwrap().as_secs();
        assert_eq!(claims["sub"], "svc:contract");
        assert_eq!(claims["scope"], "read");
        assert_eq!(claims["iat"], iat);
        assert_eq!(claims["exp"], exp);
        assert_eq!(claims["jti"], t.id.as_str(), "the id is the token's jti");
        assert_eq!(
            t.expires_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(exp)
        );
        assert_eq!(t.issued_token_type, "urn:ietf:params:oauth:token-type:jwt");
        assert_eq!(t.token_type, "Bearer");
        assert_eq!(t.scope.as_deref(), Some("read"));
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
    let now = SystemTime::now();
    let issued = upstream
        .provider()
        .fetch(&upstream.request(), now)
        .await
        .unwrap_or_else(|e| {
            panic!("the wire-exact stand-in refused the request (its matcher says why): {e:?}")
        });
    upstream.assert_answered(&issued, now);
    assert_eq!(
        upstream.calls().await,
        upstream.calls_per_fetch(),
        "one upstream call per step"
    );
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
        assert_eq!(
            upstream.calls().await,
            upstream.calls_per_fetch(),
            "a refusal is not retried"
        );
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
    assert_eq!(
        upstream.calls().await,
        1 + upstream.calls_per_fetch(),
        "one throttled answer, one retry"
    );
}

async fn down_with_a_cached_credential_still_served<U: Upstream>() {
    let upstream = U::start().await;
    upstream.succeed(Duration::from_secs(600)).await;
    let cache = CredentialCache::new(10, upstream.provider());
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
    super::GcpFederated,
    happy_path,
    expiry_honoured,
    upstream_rejection,
    throttled_then_recovers,
    down_with_a_cached_credential_still_served
);
contract!(
    gcp_impersonation,
    super::GcpImpersonation,
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
