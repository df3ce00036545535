use std::sync::atomic::AtomicUsize;

use secrecy::SecretString;
use stsbridge_providers::{AccessToken, JwtRequest, Provider};

use super::*;
use crate::testutil::{at, now};

fn aws_timing(lifetime_secs: u64) -> Timing {
    Timing::new(
        ProviderKind::Aws,
        now(),
        now() + Duration::from_secs(lifetime_secs),
    )
}

#[test]
fn aws_entries_keep_fifteen_minutes_in_hand() {
    let t = aws_timing(3600);
    assert_eq!(t.fresh_until, at(45 * 60));
    assert_eq!(t.refresh_at, at(36 * 60));
    assert_eq!(t.usable_until, at(3600 - 30));
    assert_eq!(t.phase(at(0)), Phase::Fresh);
    assert_eq!(t.phase(at(36 * 60)), Phase::RefreshAhead);
    assert_eq!(t.phase(at(45 * 60)), Phase::Stale);
    assert_eq!(t.phase(at(3600 - 30)), Phase::Dead);
}

#[test]
fn short_sessions_keep_a_fifth() {
    // A 15-minute AWS session cannot keep 15 minutes in hand: it keeps the last fifth.
    let t = aws_timing(900);
    assert_eq!(t.fresh_until, at(720));
    let jwt = Timing::new(ProviderKind::Jwt, now(), at(300));
    assert_eq!(jwt.fresh_until, at(240));
    assert_eq!(jwt.refresh_at, at(192));
    assert_eq!(jwt.usable_until, at(270));
}

/// A stand-in provider that counts calls, answers after a delay, and can be told to fail.
struct Counting {
    calls: AtomicUsize,
    lifetime: Duration,
    delay: Duration,
    fail: std::sync::atomic::AtomicBool,
}

impl Counting {
    fn new(lifetime: Duration, delay: Duration) -> Arc<Self> {
        Arc::new(Counting {
            calls: AtomicUsize::new(0),
            lifetime,
            delay,
            fail: false.into(),
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Provider<JwtRequest> for Counting {
    fn fetch<'a>(
        &'a self,
        _: &'a JwtRequest,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Issued, ProviderError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(ProviderError::Unavailable {
                    provider: ProviderKind::Jwt,
                    detail: "down".into(),
                });
            }
            Ok(Issued {
                credential: Credential::Token(Box::new(AccessToken {
                    token: SecretString::from(format!("token-{n}")),
                    issued_token_type: "jwt".into(),
                    token_type: "Bearer".into(),
                    expires_at: now + self.lifetime,
                    scope: None,
                    id: format!("id-{n}"),
                })),
                upstream: UpstreamInfo::default(),
            })
        })
    }
}

fn key(target: &str) -> Key {
    Arc::new(ProviderRequest::Jwt(JwtRequest {
        cnf: None,
        target: target.into(),
        audience: "a".into(),
        subject: "s".into(),
        scopes: vec![],
        lifetime: Duration::from_secs(300),
        act: None,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_upstream_call() {
    let provider = Counting::new(Duration::from_secs(300), Duration::from_millis(50));
    let cache = CredentialCache::new(100, Providers::default().jwt(provider.clone()));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let cache = Arc::clone(&cache);
        tasks.push(tokio::spawn(async move {
            cache.get(key("t"), SystemTime::now()).await.unwrap().1
        }));
    }
    let mut events = Vec::new();
    for t in tasks {
        events.push(t.await.unwrap());
    }
    assert_eq!(provider.calls(), 1);
    assert_eq!(events.iter().filter(|e| **e == CacheEvent::Miss).count(), 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == CacheEvent::Coalesced)
            .count(),
        99
    );
    let (_, event) = cache.get(key("t"), SystemTime::now()).await.unwrap();
    assert_eq!(event, CacheEvent::Hit);
    assert_eq!(provider.calls(), 1);
    // Another key is another session.
    cache.get(key("u"), SystemTime::now()).await.unwrap();
    assert_eq!(provider.calls(), 2);
}

/// Entries are held by the digest of the rendered request: requests whose fields hold the same
/// characters split differently, or differ only in an optional field, are different sessions and
/// never share a credential.
#[tokio::test]
async fn requests_that_differ_only_in_where_a_field_ends_do_not_share_a_credential() {
    let provider = Counting::new(Duration::from_secs(300), Duration::ZERO);
    let cache = CredentialCache::new(100, Providers::default().jwt(provider.clone()));
    let request = |audience: &str, subject: &str, act: Option<&str>| {
        Arc::new(ProviderRequest::Jwt(JwtRequest {
            cnf: None,
            target: "t".into(),
            audience: audience.into(),
            subject: subject.into(),
            scopes: vec![],
            lifetime: Duration::from_secs(300),
            act: act.map(str::to_owned),
        }))
    };
    let now = SystemTime::now();
    let mut tokens = Vec::new();
    for r in [
        request("ab", "c", None),
        request("a", "bc", None),
        request("a", "bc", Some("{}")),
        request("a", "bc", Some("")),
    ] {
        let (entry, event) = cache.get(r, now).await.unwrap();
        assert_eq!(event, CacheEvent::Miss);
        tokens.push(entry.credential.public_id().to_owned());
    }
    assert_eq!(provider.calls(), 4);
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 4);
    // The same request again is the same session.
    let (_, event) = cache.get(request("a", "bc", None), now).await.unwrap();
    assert_eq!(event, CacheEvent::Hit);
    assert_eq!(provider.calls(), 4);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let provider = Counting::new(Duration::from_secs(300), Duration::ZERO);
    provider.fail.store(true, Ordering::SeqCst);
    let cache = CredentialCache::new(100, Providers::default().jwt(provider.clone()));
    assert!(cache.get(key("t"), SystemTime::now()).await.is_err());
    assert!(cache.get(key("t"), SystemTime::now()).await.is_err());
    assert_eq!(provider.calls(), 2);
    provider.fail.store(false, Ordering::SeqCst);
    assert!(cache.get(key("t"), SystemTime::now()).await.is_ok());
}

#[tokio::test]
async fn a_still_valid_credential_is_served_when_the_upstream_fails() {
    let provider = Counting::new(Duration::from_secs(300), Duration::ZERO);
    let cache = CredentialCache::new(100, Providers::default().jwt(provider.clone()));
    let start = SystemTime::now();
    let (first, _) = cache.get(key("t"), start).await.unwrap();
    provider.fail.store(true, Ordering::SeqCst);
    // Past the serving window (4 of 5 minutes), before expiry.
    let later = start + Duration::from_secs(250);
    let (served, event) = cache.get(key("t"), later).await.unwrap();
    assert_eq!(event, CacheEvent::Stale);
    assert_eq!(served.credential.public_id(), first.credential.public_id());
    assert_eq!(provider.calls(), 2, "it tried the upstream first");
    // Right after a failure it does not hammer the upstream.
    let (_, event) = cache
        .get(key("t"), later + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(event, CacheEvent::Stale);
    assert_eq!(provider.calls(), 2);
    // When the upstream recovers, the next request past the retry delay gets a new credential.
    provider.fail.store(false, Ordering::SeqCst);
    let (fresh, event) = cache
        .get(key("t"), later + Duration::from_secs(11))
        .await
        .unwrap();
    assert_eq!(event, CacheEvent::Miss);
    assert_ne!(fresh.credential.public_id(), first.credential.public_id());
}

#[tokio::test]
async fn hits_late_in_the_window_refresh_in_the_background() {
    let provider = Counting::new(Duration::from_secs(300), Duration::ZERO);
    let cache = CredentialCache::new(100, Providers::default().jwt(provider.clone()));
    let start = SystemTime::now();
    let (first, _) = cache.get(key("t"), start).await.unwrap();
    // 200 s in: past refresh_at (192 s), before fresh_until (240 s).
    let (served, event) = cache
        .get(key("t"), start + Duration::from_secs(200))
        .await
        .unwrap();
    assert_eq!(event, CacheEvent::Hit);
    assert_eq!(
        served.credential.public_id(),
        first.credential.public_id(),
        "the caller does not wait"
    );
    for _ in 0..100 {
        if provider.calls() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(provider.calls(), 2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (next, _) = cache.get(key("t"), SystemTime::now()).await.unwrap();
    assert_ne!(next.credential.public_id(), first.credential.public_id());
}

/// Every cached credential carries an `Entry` (in an `Arc`): kept within 208 bytes so that with the
/// `Arc`'s counts it fills one 224-byte allocation (was 344 before the token was boxed, the
/// upstream ids made boxed strings and the reference cell made optional).
#[test]
fn an_entry_stays_small() {
    assert!(
        std::mem::size_of::<Entry>() <= 208,
        "Entry is {} bytes",
        std::mem::size_of::<Entry>()
    );
    assert!(std::mem::size_of::<Credential>() <= 72);
}
