//! Internal audience-bound tokens (RFC 8693), minted by stsbridge's own issuer. Needs no cloud.
//!
//! The minted token carries `aud` = the target's audience, the narrowed `scope`, and `act` when a
//! caller acts for the subject (delegation). Which scopes and how deep a delegation chain may go is
//! decided before a request reaches this provider; here it is only signed.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::future::BoxFuture;

use crate::credential::{AccessToken, Credential};
use crate::error::ProviderError;
use crate::request::{JwtRequest, ProviderKind};
use crate::signer::{AssertionSigner, MintSpec};
use crate::{Issued, Provider, UpstreamInfo};

/// RFC 8693 token type of the tokens this provider issues.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Internal tokens are for service-to-service calls: an hour is the most they should live.
pub const MAX_JWT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// The internal JWT provider.
pub struct JwtProvider {
    signer: Arc<dyn AssertionSigner>,
}

impl JwtProvider {
    /// A provider that mints with `signer`.
    pub fn new(signer: Arc<dyn AssertionSigner>) -> Self {
        JwtProvider { signer }
    }

    fn mint(&self, request: &JwtRequest, now: SystemTime) -> Result<Issued, ProviderError> {
        let started = Instant::now();
        let mut extra = serde_json::Map::new();
        let scope = (!request.scopes.is_empty()).then(|| request.scopes.join(" "));
        if let Some(scope) = &scope {
            extra.insert("scope".into(), serde_json::Value::String(scope.clone()));
        }
        // Claims the request carries as canonical JSON (so that it can be a cache key).
        for (name, text) in [("act", &request.act), ("cnf", &request.cnf)] {
            if let Some(text) = text {
                let value: serde_json::Value =
                    serde_json::from_str(text).map_err(|_| ProviderError::InvalidResponse {
                        provider: ProviderKind::Jwt,
                        detail: format!("the {name} claim is not valid JSON"),
                    })?;
                extra.insert(name.into(), value);
            }
        }
        let minted = self.signer.mint(
            MintSpec {
                subject: &request.subject,
                audience: &request.audience,
                lifetime: Some(request.lifetime),
                extra,
            },
            now,
        )?;
        Ok(Issued {
            credential: Credential::Token(Box::new(AccessToken {
                token: minted.token,
                issued_token_type: JWT_TOKEN_TYPE.into(),
                token_type: "Bearer".into(),
                expires_at: minted.expires_at,
                scope,
                id: minted.jti.clone(),
            })),
            upstream: UpstreamInfo {
                request_id: None,
                latency: started.elapsed(),
                assertion_jti: Some(minted.jti.into()),
            },
        })
    }
}

impl Provider<JwtRequest> for JwtProvider {
    fn fetch<'a>(
        &'a self,
        request: &'a JwtRequest,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Issued, ProviderError>> {
        Box::pin(std::future::ready(self.mint(request, now)))
    }
}
