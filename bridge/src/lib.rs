//! stsbridge: a cloud STS bridge.
//!
//! A workload presents a token it already has; stsbridge validates it, maps its claims through
//! declarative rules, and hands back short-lived cloud credentials or an internal audience-bound JWT.
//!
//! Module map, in the order of one exchange:
//! - [`config`]: the YAML config, compiled into a validated [`config::Config`].
//! - [`token`]: token validation (pure) and JWKS fetching ([`token::jwks`]); [`jose`] names the
//!   signature algorithms.
//! - [`mapping`]: targets and rules; decisions, `explain`, delegation, and rendering provider
//!   requests.
//! - [`issuer`]: stsbridge's own signing keys, discovery documents and minting.
//! - [`cache`]: the credential cache with coalescing and refresh ahead, in front of
//!   [`upstream`], the providers by kind, each behind a circuit [`breaker`].
//! - [`limits`]: per-caller rate limits, single-use `jti`s, failed validations per address;
//!   [`shared`]: where single use and rate limits are kept (this replica, or Redis for all);
//!   [`revocation`]: what is revoked, where it is kept, and how every replica learns of it.
//! - [`exchange`]: [`exchange::Bridge`], which runs one exchange end to end.
//! - [`audit`]: one JSON event per decision; [`metrics`]: Prometheus metrics.
//! - [`http`]: the routes; [`http::error`] is the one place errors become responses.
//! - [`server`]: `run(listener, bridge, shutdown)`, and `run_tls` over [`tls`].
//! - [`dev`]: dev mode (`stsbridge serve` without a config).
//! - [`client`]: the service's client side, for `credential-process` and [`client::agent`], the
//!   loopback sidecar that serves each cloud SDK's own local credential protocol.
//! - [`cli`]: the command line, with [`exit`] codes; [`partner`]: `partner init`.
//! - [`clock`] and [`digest`]: time and hashing as stsbridge writes them.
//!
//! The providers (AWS, GCP, Azure, internal JWT) live in the `stsbridge-providers` crate.

#![forbid(unsafe_code)]

pub mod audit;
pub mod breaker;
pub mod cache;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod dev;
pub mod digest;
pub mod dpop;
pub mod exchange;
pub mod exit;
pub mod http;
pub mod issuer;
pub mod jose;
pub mod limits;
pub mod mapping;
pub mod metrics;
pub mod partner;
pub mod revocation;
pub mod server;
pub mod shared;
pub mod tls;
pub mod token;
pub mod upstream;

#[cfg(test)]
pub(crate) mod testutil;

pub use exchange::Bridge;
/// The allocator stsbridge's binaries install (`#[global_allocator]`): mimalloc.
pub use mimalloc::MiMalloc as Allocator;
pub use server::run;
