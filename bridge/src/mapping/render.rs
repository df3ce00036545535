//! Rendering: an allowed target and the caller's token become the provider request, every
//! templated value sanitized to the cloud's limits.

use super::*;

/// Why rendering failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A template read a claim the token lacks or cannot use.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A requested scope is not available for the target.
    #[error("scope {0:?} is not available for this target")]
    ScopeNotAvailable(String),
    /// The delegation chain would be too long.
    #[error("the delegation chain would be longer than {MAX_DELEGATION_DEPTH} actors")]
    DelegationTooDeep,
    /// An internal token's subject would read like a cloud assertion's (`target:...`).
    #[error("the token's subject would start with target:, which only cloud assertions use")]
    ReservedSubject,
}

/// Everything a render may read.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    /// The validated subject token.
    pub token: &'a ValidatedToken,
    /// The raw subject token (handed on by passthrough targets only).
    pub raw_token: &'a str,
    /// Scopes requested (RFC 8693 `scope`); `None` means all of the target's.
    pub requested_scopes: Option<&'a [String]>,
    /// The validated actor token (RFC 8693 delegation).
    pub actor: Option<&'a ValidatedToken>,
    /// The subject token's own delegation chain, as its trust allows it to be carried on.
    pub prior_act: &'a PriorAct,
}

/// Renders the provider request for an allowed target.
pub fn render(target: &Target, input: &RenderInput<'_>) -> Result<ProviderRequest, RenderError> {
    let token = input.token;
    let ctx = RenderContext {
        subject: &token.subject,
        issuer: &token.trust,
        target: &target.name,
        claims: &token.claims,
    };
    let field = |t: &Template, f: Field| t.render(&ctx).map(|s| sanitize(f, &s));
    let opt = |t: &Option<Template>, f: Field| t.as_ref().map(|t| field(t, f)).transpose();
    let tags = |tags: &[(String, Template)]| -> Result<Vec<(String, String)>, TemplateError> {
        tags.iter()
            .map(|(k, t)| Ok((k.clone(), field(t, Field::AwsTagValue)?)))
            .collect()
    };
    let assertion = || -> Result<AssertionSource, TemplateError> {
        Ok(match &target.assertion {
            AssertionMode::Mint(subject) => AssertionSource::Mint {
                subject: field(subject, Field::AssertionSubject)?,
            },
            AssertionMode::Passthrough => {
                AssertionSource::Passthrough(PassthroughToken::new(input.raw_token))
            }
        })
    };
    match &target.kind {
        TargetKind::Gcp(gcp) => Ok(ProviderRequest::Gcp(GcpRequest {
            target: target.name.to_string(),
            assertion: assertion()?,
            audience: gcp.audience.clone(),
            assertion_audience: gcp.assertion_audience.clone(),
            scopes: gcp.scopes.clone(),
            service_account: gcp.service_account.clone(),
            lifetime: gcp.lifetime,
            delegates: gcp.delegates.clone(),
        })),
        TargetKind::Azure(azure) => Ok(ProviderRequest::Azure(AzureRequest {
            target: target.name.to_string(),
            assertion: assertion()?,
            tenant_id: azure.tenant_id.clone(),
            client_id: azure.client_id.clone(),
            scope: azure.scope.clone(),
        })),
        TargetKind::Aws(aws) => {
            let assertion = assertion()?;
            let session_name = field(&aws.session_name, Field::AwsSessionName)?;
            let source_identity = opt(&aws.source_identity, Field::AwsSourceIdentity)?;
            let mut chain = Vec::with_capacity(aws.chain.len());
            for hop in &aws.chain {
                chain.push(AwsHop {
                    role_arn: hop.role_arn.clone(),
                    session_name: opt(&hop.session_name, Field::AwsSessionName)?
                        .unwrap_or_else(|| session_name.clone()),
                    duration: hop.duration,
                    external_id: opt(&hop.external_id, Field::AwsExternalId)?,
                    session_policy: hop.session_policy.clone(),
                    tags: tags(&hop.tags)?,
                    transitive_tag_keys: hop.transitive_tag_keys.clone(),
                    source_identity: opt(&hop.source_identity, Field::AwsSourceIdentity)?
                        .or_else(|| source_identity.clone()),
                });
            }
            Ok(ProviderRequest::Aws(AwsRequest {
                target: target.name.clone(),
                assertion,
                role_arn: aws.role_arn.clone(),
                session_name,
                duration: aws.duration,
                session_policy: aws.session_policy.clone(),
                tags: tags(&aws.tags)?,
                transitive_tag_keys: aws.transitive_tag_keys.clone(),
                source_identity,
                chain,
            }))
        }
        TargetKind::Jwt(jwt) => {
            let scopes = match input.requested_scopes {
                None => jwt.scopes.clone(),
                Some(requested) => {
                    if let Some(extra) = requested.iter().find(|s| !jwt.scopes.contains(s)) {
                        return Err(RenderError::ScopeNotAvailable(extra.clone()));
                    }
                    let set: BTreeSet<String> = requested.iter().cloned().collect();
                    set.into_iter().collect()
                }
            };
            let act = delegation::delegation(input.prior_act, input.actor)?;
            let subject = match &jwt.subject {
                Some(t) => field(t, Field::JwtSubject)?,
                None if token.trust == OWN_TRUST => sanitize(Field::JwtSubject, &token.subject),
                None => sanitize(
                    Field::JwtSubject,
                    &format!("{}:{}", token.trust, token.subject),
                ),
            };
            if subject.starts_with(ASSERTION_SUBJECT_PREFIX) {
                return Err(RenderError::ReservedSubject);
            }
            Ok(ProviderRequest::Jwt(JwtRequest {
                target: target.name.to_string(),
                audience: jwt.audience.clone(),
                subject,
                scopes,
                lifetime: jwt.lifetime,
                act: act.map(|a| a.to_string()),
                // Bound to the connection by the exchange, which knows it.
                cnf: None,
            }))
        }
    }
}
