//! The reloadable policy: the trust list, its key sets and the mappings, swapped as one; and token
//! validation against it, with the memo of tokens already validated.

use super::*;

/// What a reload swaps as one: the trust list, its key sets, and the mappings. An exchange takes
/// one snapshot at its start and finishes on it.
pub struct Policy {
    pub(super) trust_by_iss: HashMap<String, TrustConfig>,
    /// The limits of trust entries that set them, by name; kept across reloads while unchanged.
    pub(super) limits: HashMap<String, Arc<PartnerSlots>>,
    pub(super) jwks: Arc<JwksManager>,
    pub(super) mappings: Arc<Mappings>,
    refreshers: Vec<JoinHandle<()>>,
    /// Tokens that passed validation under this policy, by the SHA-256 of the whole token. A
    /// reload starts a new one, so a changed trust entry never honours an old result.
    verified: moka::sync::Cache<[u8; 32], Arc<Verified>>,
}

/// Most validated tokens remembered per policy. Enough for the callers that repeat a token (an
/// SDK or agent presents the same one for its whole life), small enough to stay a fixed cost
/// (about 3 KiB each with a Kubernetes token's claims, so about 12 MiB); a token that is not
/// remembered is only verified again.
const VERIFIED_TOKENS: u64 = 4_096;

/// The longest a validated token is remembered, whatever its own expiry.
const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A token that passed every check, as remembered for its next presentation.
struct Verified {
    token: Arc<ValidatedToken>,
    /// The key that verified it, by its material: when the issuer withdraws that key, the token
    /// is checked again (a `kid` may be absent, or reused for another key).
    key: KeyThumbprint,
    /// `exp` plus the trust entry's leeway, unix seconds: the last second it may be used.
    usable_until: u64,
    /// For the audit event.
    jti_hash: Option<String>,
}

impl Drop for Policy {
    fn drop(&mut self) {
        for t in &self.refreshers {
            t.abort();
        }
    }
}

impl Policy {
    /// Loads the mappings for `trust` and starts fetching its keys, taking over the key sets of
    /// `previous` where a trust entry is unchanged.
    pub(super) fn build(
        trust: &[TrustConfig],
        config_file: Option<&std::path::Path>,
        mappings_dir: &std::path::Path,
        own_url: &str,
        previous: Option<&Policy>,
        metrics: &Arc<Metrics>,
    ) -> Result<Policy, StartError> {
        let config_file = config_file.unwrap_or(mappings_dir);
        let (mappings, trust) = Mappings::load_with_trust(mappings_dir, trust, config_file)
            .map_err(StartError::Mappings)?;
        let own_errors = mappings.own_issuer_errors(own_url);
        if !own_errors.is_empty() {
            return Err(StartError::Mappings(ConfigErrors(own_errors)));
        }
        let trust = &trust;
        let jwks = Arc::new(JwksManager::new(trust, Some(Arc::clone(metrics)))?);
        if let Some(previous) = previous {
            jwks.adopt(&previous.jwks);
        }
        let refreshers = jwks.spawn_refreshers();
        let limits = trust
            .iter()
            .filter_map(|t| {
                let max = t.max_concurrent?;
                let kept = previous
                    .and_then(|p| p.limits.get(&t.name))
                    .filter(|l| l.is(max));
                let limit = match kept {
                    Some(l) => Arc::clone(l),
                    None => Arc::new(PartnerSlots::new(max)),
                };
                Some((t.name.clone(), limit))
            })
            .collect();
        Ok(Policy {
            limits,
            // stsbridge's own tokens come back under the built-in entry; its keys are the
            // issuer's own, never fetched (it is not in `jwks`).
            trust_by_iss: trust
                .iter()
                .cloned()
                .chain(std::iter::once(crate::config::own_trust(
                    own_url,
                    mappings.jwt_audiences(),
                )))
                .map(|t| (t.issuer.clone(), t))
                .collect(),
            jwks,
            mappings: Arc::new(mappings),
            refreshers,
            // Sized for all of them from the start: growing the map rehashes it under load.
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_TOKENS)
                .initial_capacity(VERIFIED_TOKENS as usize)
                .time_to_live(VERIFIED_TOKEN_TTL)
                .build(),
        })
    }

    /// The mappings.
    pub fn mappings(&self) -> &Arc<Mappings> {
        &self.mappings
    }

    /// The key sets.
    pub fn jwks(&self) -> &Arc<JwksManager> {
        &self.jwks
    }
}

impl Bridge {
    /// Validates a token, refreshing its issuer's keys when it names a key not yet known.
    /// Fills `caller` with what is known of the token as soon as it is known.
    ///
    /// A token presented again (the same bytes) while it is still usable, under the same policy
    /// and while the key that verified it is still published, is not verified again: SDKs and
    /// agents present one token for its whole life. Only validation is remembered; the decision
    /// is made afresh for every request.
    pub async fn validate(
        &self,
        policy: &Policy,
        raw: &str,
        now: SystemTime,
        caller: &mut Caller,
    ) -> Result<Arc<ValidatedToken>, TokenError> {
        let digest = crate::digest::sha256(raw.as_bytes());
        if let Some(hit) = policy.verified.get(&digest) {
            let key_published = self
                .keys_of(policy, &hit.token.trust)
                .is_some_and(|k| k.has_thumbprint(&hit.key));
            if key_published && token::unix_seconds(now) <= hit.usable_until {
                caller.subject = Some(hit.token.subject.chars().take(256).collect());
                caller.jti_hash.clone_from(&hit.jti_hash);
                caller.issuer = Some(hit.token.trust.clone());
                caller.verified = true;
                return Ok(Arc::clone(&hit.token));
            }
            policy.verified.invalidate(&digest);
        }
        let parsed = token::parse(raw)?;
        caller.subject = parsed
            .claims
            .get("sub")
            .and_then(|s| s.as_str())
            .map(|s| s.chars().take(256).collect());
        caller.jti_hash = parsed
            .claims
            .get("jti")
            .and_then(|s| s.as_str())
            .map(short_hash);
        let Some(trust) = policy.trust_by_iss.get(&parsed.issuer) else {
            caller.issuer = Some(format!(
                "untrusted:{}",
                parsed.issuer.chars().take(128).collect::<String>()
            ));
            return Err(TokenError::UnknownIssuer);
        };
        caller.issuer = Some(trust.name.clone());
        if !trust.algorithms.contains(&parsed.alg) {
            return Err(TokenError::AlgNotAllowed);
        }
        let mut keys = self.keys_of(policy, &trust.name);
        let missing = match (&keys, &parsed.kid) {
            (None, _) => true,
            (Some(k), Some(kid)) => !k.has_kid(kid),
            (Some(_), None) => false,
        };
        // stsbridge's own keys are never fetched: they are the ones it publishes.
        if missing
            && trust.name != OWN_TRUST
            && policy
                .jwks
                .refresh_for(&trust.name, parsed.kid.as_deref())
                .await
        {
            keys = policy.jwks.keys(&trust.name);
        }
        let (token, key) = token::verify_with_key(parsed, trust, keys.as_deref(), now)?;
        let token = Arc::new(token);
        caller.verified = true;
        policy.verified.insert(
            digest,
            Arc::new(Verified {
                token: Arc::clone(&token),
                key,
                usable_until: token.expires_at.saturating_add(trust.leeway.as_secs()),
                jti_hash: caller.jti_hash.clone(),
            }),
        );
        Ok(token)
    }

    /// The verification keys of trust entry `name`: stsbridge's own published keys for
    /// [`OWN_TRUST`], else the fetched set (`None` before the first fetch).
    pub(super) fn keys_of(&self, policy: &Policy, name: &str) -> Option<Arc<KeySet>> {
        if name == OWN_TRUST {
            Some(self.issuer.verifying_keys())
        } else {
            policy.jwks.keys(name)
        }
    }
}

/// What an operator needs to fix a subject token refused for its issuer or audience, read from
/// the token's own (unverified) claims: the trusted issuer that differs from its `iss` only by a
/// trailing slash or letter case, or the audiences its issuer's trust entry accepts. For the log
/// and the audit event; [`Hint::caller`] is the part safe to tell the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// For the log and the audit event.
    pub operator: String,
    /// For the caller's `error_description`, when there is something safe to say.
    pub caller: Option<&'static str>,
}

impl Policy {
    /// The [`Hint`] for a subject token `raw` refused with `error`, if there is one.
    pub(super) fn hint(&self, raw: &str, error: &TokenError) -> Option<Hint> {
        let parsed = token::parse(raw).ok()?;
        let iss: String = parsed.issuer.chars().take(256).collect();
        match error {
            TokenError::UnknownIssuer => {
                let loose = |s: &str| s.trim_end_matches('/').to_lowercase();
                let near = self
                    .trust_by_iss
                    .values()
                    .find(|t| loose(&t.issuer) == loose(&iss))?;
                Some(Hint {
                    operator: format!(
                        "the token's iss {iss:?} differs from trust entry {}'s issuer {:?} only by a trailing slash or letter case; iss must match exactly",
                        near.name, near.issuer
                    ),
                    caller: Some(
                        "a trusted issuer differs from this token's iss only by a trailing slash or letter case: iss must match it exactly",
                    ),
                })
            }
            TokenError::AudienceMismatch => {
                let trust = self.trust_by_iss.get(&parsed.issuer)?;
                let aud = match parsed.claims.get("aud") {
                    Some(serde_json::Value::String(a)) => format!("{a:?}"),
                    Some(other) => other.to_string().chars().take(512).collect(),
                    None => "none".into(),
                };
                Some(Hint {
                    operator: format!(
                        "the token's aud {aud} is not one of trust entry {}'s audiences {:?}",
                        trust.name, trust.audiences
                    ),
                    caller: None,
                })
            }
            _ => None,
        }
    }
}
