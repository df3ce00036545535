//! The cloud side of stsbridge, behind one small trait.
//!
//! The service decides *who* may obtain *what*; this crate only knows how to obtain it. A
//! [`ProviderRequest`] is the fully rendered request (role, session name, tags, chain, scopes...), and
//! a [`Provider`] of that request's type turns it into a [`Credential`]; [`Providers`] holds one per
//! kind and dispatches each request to its own, once. No cloud SDK type crosses this crate's boundary.
//!
//! Module map:
//! - [`request`]: the rendered requests, one type per cloud; they are the cache keys.
//! - [`credential`]: what comes back; secrets are redacted from `Debug` and zeroized on drop.
//! - [`signer`]: the [`AssertionSigner`] through which providers ask stsbridge's own issuer to mint the
//!   short-lived assertion a cloud is shown.
//! - [`error`]: [`ProviderError`], which keeps the cloud's own error code and says what to check.
//! - [`aws`]: STS `AssumeRoleWithWebIdentity` plus chained `AssumeRole` hops, on `aws-sdk-sts`.
//! - [`gcp`]: workload identity federation (STS token exchange, then service account
//!   impersonation), on Google's documented REST protocol.
//! - [`azure`]: Entra ID's client-credentials grant with a federated client assertion, on its
//!   documented REST protocol.
//! - [`jwt`]: internal audience-bound tokens (RFC 8693), minted by stsbridge itself; needs no cloud.
//! - [`rest`]: what the REST providers share: bounded concurrency, retries with jittered backoff.

#![forbid(unsafe_code)]

pub mod aws;
pub mod azure;
pub mod credential;
pub mod error;
pub mod gcp;
pub mod jwt;
pub mod request;
pub mod rest;
pub mod sanitize;
pub mod signer;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

pub use credential::{AccessToken, AwsCredential, Credential};
pub use error::ProviderError;
pub use request::{
    AssertionSource, AwsHop, AwsRequest, AzureRequest, GcpRequest, JwtRequest, ProviderKind,
    ProviderRequest,
};
pub use signer::{AssertionSigner, MintSpec, MintedAssertion, SignError};

/// What a provider hands back for one upstream exchange.
#[derive(Debug)]
pub struct Issued {
    /// The credential itself.
    pub credential: Credential,
    /// Facts about the upstream call, for the audit event.
    pub upstream: UpstreamInfo,
}

/// Facts about one upstream call, recorded in the audit event (never a secret).
#[derive(Debug, Clone, Default)]
pub struct UpstreamInfo {
    /// The cloud's request id of the last call made, when it gave one.
    pub request_id: Option<Box<str>>,
    /// Wall time spent in upstream calls.
    pub latency: Duration,
    /// The `jti` of the assertion stsbridge minted for this exchange, if it minted one.
    pub assertion_jti: Option<Box<str>>,
}

/// One cloud (or the internal issuer): obtains a credential for its own kind of request `R`.
///
/// Implementations hold their own clients and limits; they are shared by every request and must be
/// cheap to call concurrently.
pub trait Provider<R>: Send + Sync + 'static {
    /// Obtains a fresh credential for `request`, minting any assertion at time `now`.
    ///
    /// On failure returns a [`ProviderError`]: `Rejected` when the upstream refused (its error code
    /// is kept), `Throttled` or `Unavailable` when it could not answer, `Assertion` when the
    /// assertion could not be minted, and `InvalidResponse` when its answer could not be
    /// understood. Never caches: caching is the caller's job.
    fn fetch<'a>(
        &'a self,
        request: &'a R,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Issued, ProviderError>>;
}

/// The providers stsbridge runs with, at most one per kind. A [`ProviderRequest`] is dispatched on
/// its type here, once, to the provider of that type.
#[derive(Clone, Default)]
pub struct Providers {
    aws: Option<Arc<dyn Provider<AwsRequest>>>,
    gcp: Option<Arc<dyn Provider<GcpRequest>>>,
    azure: Option<Arc<dyn Provider<AzureRequest>>>,
    jwt: Option<Arc<dyn Provider<JwtRequest>>>,
}

impl Providers {
    /// With `provider` serving AWS requests.
    pub fn aws(mut self, provider: Arc<dyn Provider<AwsRequest>>) -> Self {
        self.aws = Some(provider);
        self
    }

    /// With `provider` serving GCP requests.
    pub fn gcp(mut self, provider: Arc<dyn Provider<GcpRequest>>) -> Self {
        self.gcp = Some(provider);
        self
    }

    /// With `provider` serving Azure requests.
    pub fn azure(mut self, provider: Arc<dyn Provider<AzureRequest>>) -> Self {
        self.azure = Some(provider);
        self
    }

    /// With `provider` minting internal JWTs.
    pub fn jwt(mut self, provider: Arc<dyn Provider<JwtRequest>>) -> Self {
        self.jwt = Some(provider);
        self
    }

    /// Whether a provider of `kind` is configured.
    pub fn serves(&self, kind: ProviderKind) -> bool {
        match kind {
            ProviderKind::Aws => self.aws.is_some(),
            ProviderKind::Gcp => self.gcp.is_some(),
            ProviderKind::Azure => self.azure.is_some(),
            ProviderKind::Jwt => self.jwt.is_some(),
        }
    }

    /// Obtains a credential for `request` from the provider of its kind, at time `now`; fails with
    /// [`ProviderError::Unavailable`] when no provider of that kind is configured.
    pub fn fetch<'a>(
        &'a self,
        request: &'a ProviderRequest,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Issued, ProviderError>> {
        fn serve<'a, R: 'static>(
            provider: &'a Option<Arc<dyn Provider<R>>>,
            request: &'a R,
            kind: ProviderKind,
            now: SystemTime,
        ) -> BoxFuture<'a, Result<Issued, ProviderError>> {
            match provider {
                Some(p) => p.fetch(request, now),
                None => Box::pin(std::future::ready(Err(ProviderError::Unavailable {
                    provider: kind,
                    detail: "the provider is not configured".into(),
                }))),
            }
        }
        let kind = request.kind();
        match request {
            ProviderRequest::Aws(r) => serve(&self.aws, r, kind, now),
            ProviderRequest::Gcp(r) => serve(&self.gcp, r, kind, now),
            ProviderRequest::Azure(r) => serve(&self.azure, r, kind, now),
            ProviderRequest::Jwt(r) => serve(&self.jwt, r, kind, now),
        }
    }
}
