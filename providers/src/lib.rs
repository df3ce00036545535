//! The cloud side of stsbridge, behind one small trait.
//!
//! The service decides *who* may obtain *what*; this crate only knows how to obtain it. A
//! [`ProviderRequest`] is the fully rendered request (role, session name, tags, chain, scopes...), and
//! a [`Provider`] turns it into a [`Credential`]. No cloud SDK type crosses this crate's boundary.
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
    pub request_id: Option<String>,
    /// Wall time spent in upstream calls.
    pub latency: Duration,
    /// The `jti` of the assertion stsbridge minted for this exchange, if it minted one.
    pub assertion_jti: Option<String>,
}

/// One cloud (or the internal issuer) behind a uniform interface.
///
/// Implementations hold their own clients and limits; they are shared by every request and must be
/// cheap to call concurrently.
pub trait Provider: Send + Sync + 'static {
    /// Which kind of request this provider serves.
    fn kind(&self) -> ProviderKind;

    /// Obtains a fresh credential for `request`, minting any assertion at time `now`.
    ///
    /// On failure returns a [`ProviderError`]: `Rejected` when the upstream refused (its error code
    /// is kept), `Throttled` or `Unavailable` when it could not answer, `Assertion` when the
    /// assertion could not be minted, `InvalidResponse` when its answer could not be understood, and
    /// `Mismatch` when `request` is for another provider. Never caches: caching is the caller's job.
    fn fetch<'a>(
        &'a self,
        request: &'a ProviderRequest,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Issued, ProviderError>>;
}
