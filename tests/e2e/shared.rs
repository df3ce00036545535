//! More than one replica: state that must hold across replicas (single use of `jti`s, rate
//! limits) lives in a real Redis server (`shared_state.redis`), and a Redis that is down, hangs
//! or answers garbage never turns into an allow.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stsbridge_e2e::redis::{FakeRedis, Redis};
use stsbridge_e2e::{BRIDGE_URL, BridgeProcess, TestIdp};

use crate::cli::run;
use crate::{BIN, Setup, write_config};

/// One JWT target, allowed to the single-use issuer `ci` and to the rate-limited `partner`.
const MAPPINGS: &str = r#"
version: 1
targets:
  - name: api
    jwt: { audience: billing-api, scopes: [billing:read], lifetime: 5m }
rules:
  - name: ci-api
    issuer: ci
    subject: { glob: "svc:*" }
    allow: [api]
  - name: partner-api
    issuer: partner
    subject: { glob: "*" }
    allow: [api]
"#;

/// Replicas of stsbridge sharing one config, key directory and (when given) one Redis, as a
/// Deployment's pods do; requests go round-robin.
struct Replicas {
    ci: TestIdp,
    partner: TestIdp,
    bridges: Vec<BridgeProcess>,
    http: reqwest::Client,
    next: std::sync::atomic::AtomicUsize,
    _dir: tempfile::TempDir,
}

/// An answer: status, body, `Retry-After` (seconds).
type Answer = (u16, Value, Option<u64>);

impl Replicas {
    /// `n` replicas; `shared_state` is the YAML value of `shared_state:` (none: per replica);
    /// `files` are written beside the config first.
    async fn start(n: usize, shared_state: Option<&str>, files: &[(&str, &str)]) -> Replicas {
        Self::start_with_env(n, shared_state, files, &[]).await
    }

    /// As [`Replicas::start`], with `env` for each process.
    async fn start_with_env(
        n: usize,
        shared_state: Option<&str>,
        files: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Replicas {
        Self::launch(n, shared_state, files, env, true).await
    }

    /// Replicas that are not expected to become ready (their shared state never answers, so they
    /// never read the revocations): started, waited for only until they listen.
    async fn start_unready(n: usize, shared_state: &str) -> Replicas {
        Self::launch(n, Some(shared_state), &[], &[], false).await
    }

    async fn launch(
        n: usize,
        shared_state: Option<&str>,
        files: &[(&str, &str)],
        env: &[(&str, &str)],
        ready: bool,
    ) -> Replicas {
        let (ci, partner) = (TestIdp::start().await, TestIdp::start().await);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
        std::fs::write(dir.path().join("mappings/api.yaml"), MAPPINGS).unwrap();
        for (path, text) in files {
            std::fs::write(dir.path().join(path), text).unwrap();
        }
        let shared = shared_state.map_or(String::new(), |s| format!("shared_state: {s}\n"));
        let config = format!(
            r#"version: 1
listen: 127.0.0.1:0
issuer: {{ url: {BRIDGE_URL}, keys: {{ dir: keys }} }}
trust:
  - name: ci
    issuer: {ci}
    audiences: [{BRIDGE_URL}]
    jwks: {{ discovery: true }}
    allow_insecure_loopback: true
    replay: reject
  - name: partner
    issuer: {partner}
    audiences: [{BRIDGE_URL}]
    jwks: {{ discovery: true }}
    allow_insecure_loopback: true
    rate_limit: 10/m
    burst: 10
mappings: mappings
audit: {{ sink: stdout }}
{shared}"#,
            ci = ci.issuer,
            partner = partner.issuer,
        );
        std::fs::write(dir.path().join("stsbridge.yaml"), config).unwrap();
        let mut bridges = Vec::new();
        // One after another: the first creates the signing key the others load.
        for _ in 0..n {
            let args = ["serve", "--config", "stsbridge.yaml"];
            bridges.push(if ready {
                BridgeProcess::spawn(BIN, dir.path(), &args, env).await
            } else {
                BridgeProcess::spawn_listening(BIN, dir.path(), &args, env).await
            });
        }
        Replicas {
            ci,
            partner,
            bridges,
            http: reqwest::Client::new(),
            next: std::sync::atomic::AtomicUsize::new(0),
            _dir: dir,
        }
    }

    /// `GET /v1/credentials/api` with `token`, on the next replica in turn.
    async fn ask(&self, token: &str) -> Answer {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % self.bridges.len();
        self.ask_on(i, token).await
    }

    /// `GET /v1/credentials/api` with `token` on replica `i`.
    async fn ask_on(&self, i: usize, token: &str) -> Answer {
        let r = self
            .http
            .get(self.bridges[i].url("/v1/credentials/api"))
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        (status, r.json().await.unwrap_or(Value::Null), retry_after)
    }

    /// `/readyz` of replica `i`: status and body.
    async fn readyz(&self, i: usize) -> (u16, Value) {
        let r = self
            .http
            .get(self.bridges[i].url("/readyz"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// `/metrics` of replica `i`.
    async fn metrics(&self, i: usize) -> String {
        let r = self.http.get(self.bridges[i].url("/metrics")).send().await;
        r.unwrap().text().await.unwrap()
    }

    /// A fresh single-use token of `ci`.
    fn ci_token(&self) -> String {
        self.ci.token("svc:alice", json!({}))
    }

    /// A fresh token of `partner`.
    fn partner_token(&self) -> String {
        self.partner.token("acme-bot", json!({}))
    }

    /// Waits until every replica's `/readyz` reports its shared state `status` (bounded: the
    /// watcher pings twice a second).
    async fn until_shared_state(&self, status: &str) {
        self.until_shared_state_with(status, 200).await;
    }

    /// As [`Replicas::until_shared_state`], with `/readyz` answering `code` (503 for a replica
    /// that never read its revocations).
    async fn until_shared_state_with(&self, status: &str, code: u16) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for i in 0..self.bridges.len() {
            loop {
                let (answered, body) = self.readyz(i).await;
                assert_eq!(answered, code, "{body}");
                if body["shared_state"]["status"] == status {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {i} never reported {status}: {body}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The statuses of `answers`, counted: (200s, other statuses).
fn count(answers: &[Answer], status: u16) -> usize {
    answers.iter().filter(|a| a.0 == status).count()
}

/// One `jti` of a single-use issuer, 30 times over the replicas, the first 10 at once.
async fn one_jti_thirty_times(replicas: &Replicas) -> Vec<Answer> {
    let token = replicas.ci_token();
    let mut answers = futures::future::join_all((0..10).map(|_| replicas.ask(&token))).await;
    for _ in 0..20 {
        answers.push(replicas.ask(&token).await);
    }
    answers
}

/// 30 tokens of the partner limited to 10 a minute, over the replicas, 10 at a time.
async fn thirty_partner_requests(replicas: &Replicas) -> Vec<Answer> {
    let mut answers = Vec::new();
    for _ in 0..3 {
        let tokens: Vec<String> = (0..10).map(|_| replicas.partner_token()).collect();
        answers.extend(futures::future::join_all(tokens.iter().map(|t| replicas.ask(t))).await);
    }
    answers
}

#[test]
fn the_redis_harness_stops_and_starts_again_on_the_same_port() {
    let mut redis = Redis::start_with_password("harness-pass");
    assert_eq!(redis.cli(&["SET", "k", "v"]).trim(), "OK");
    let port = redis.port;
    redis.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    redis.start_again();
    assert_eq!(redis.port, port);
    // No persistence: a restarted server is empty.
    assert_eq!(redis.cli(&["EXISTS", "k"]).trim(), "0");

    let silent = FakeRedis::silent();
    let _held = std::net::TcpStream::connect(("127.0.0.1", silent.port)).unwrap();
    for _ in 0..100 {
        if silent.accepted() == 1 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the silent server accepted nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_shared_state_and_notes_single_use_without_it() {
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let check = |extra: &str| {
        write_config(
            dir.path(),
            &idp,
            &Setup {
                trust_extra: "    replay: reject",
                extra,
                ..Setup::default()
            },
        );
        run(dir.path(), &["check", "--config", "stsbridge.yaml"])
    };
    let (code, out, err) = check("");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("note: replay: reject (ci) without shared_state is single-replica only"),
        "{out}"
    );

    let (code, out, err) =
        check("shared_state: { redis: { url: \"redis://127.0.0.1:6379/0\", timeout: 100ms } }");
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("note:"), "{out}");

    let (code, _, err) = check("shared_state: { redis: { url: \"redis://redis.internal:6379\" } }");
    assert_eq!(code, 64);
    assert!(
        err.contains("stsbridge.yaml: shared_state.redis.url: \"redis://redis.internal:6379\" must use rediss://"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_shared_state_each_replica_keeps_its_own_single_use_and_limits() {
    // What the shared state is for: three replicas each remember their own jtis and buckets.
    let replicas = Replicas::start(3, None, &[]).await;
    let answers = one_jti_thirty_times(&replicas).await;
    assert_eq!(count(&answers, 200), 3, "{answers:?}");
    let answers = thirty_partner_requests(&replicas).await;
    assert_eq!(count(&answers, 200), 30, "{answers:?}");
    let (_, body) = replicas.readyz(0).await;
    assert_eq!(
        body["shared_state"],
        json!({ "backend": "memory", "status": "ok" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_admit_a_single_use_token_once() {
    let redis = Redis::start_with_password("replica-secret");
    let shared = format!(
        "{{ redis: {{ url: \"{}/0\", password_file: redis-password, key_prefix: \"e2e:\" }} }}",
        redis.url()
    );
    let replicas =
        Replicas::start(3, Some(&shared), &[("redis-password", "replica-secret\n")]).await;
    let started = Instant::now();
    let answers = one_jti_thirty_times(&replicas).await;
    eprintln!("30 requests for one jti: {:?}", started.elapsed());
    assert_eq!(count(&answers, 200), 1, "{answers:?}");
    assert_eq!(count(&answers, 401), 29, "{answers:?}");
    for (status, body, _) in answers.iter().filter(|a| a.0 == 401) {
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .ends_with("(replayed_jti)"),
            "{status} {body}"
        );
    }
    // Keys are hashes under the prefix: no jti, subject or trust name in Redis.
    let keys = redis.cli(&["--scan", "--pattern", "*"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let hash = keys[0].strip_prefix("e2e:jti:").unwrap();
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    // Remembered until the token can no longer be presented: exp (10 min) + leeway (30 s) + 1 s.
    let ttl: u64 = redis.cli(&["PTTL", keys[0]]).trim().parse().unwrap();
    assert!((600_000..=631_000).contains(&ttl), "{ttl}");
    for i in 0..3 {
        let (code, body) = replicas.readyz(i).await;
        assert_eq!(code, 200);
        assert_eq!(
            body["shared_state"],
            json!({ "backend": "redis", "status": "ok" })
        );
        let metrics = replicas.metrics(i).await;
        assert!(
            metrics.contains("\nstsbridge_shared_state_fallback 0\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("stsbridge_shared_state_seconds_count{op=\"admit\"} 10\n"),
            "one round trip per exchange: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_share_a_partners_rate_limit_exactly() {
    let redis = Redis::start();
    let shared = format!("{{ redis: {{ url: \"{}\" }} }}", redis.url());
    let replicas = Replicas::start(3, Some(&shared), &[]).await;
    let started = Instant::now();
    let answers = thirty_partner_requests(&replicas).await;
    eprintln!("30 partner requests: {:?}", started.elapsed());
    assert_eq!(count(&answers, 200), 10, "{answers:?}");
    assert_eq!(count(&answers, 429), 20, "{answers:?}");
    for (_, body, retry_after) in answers.iter().filter(|a| a.0 == 429) {
        assert_eq!(body["error"], "rate_limited", "{body}");
        // A token drips in every 6 s.
        assert!(
            retry_after.is_some_and(|s| (1..=7).contains(&s)),
            "{retry_after:?}"
        );
    }
    let metrics: u64 = {
        let mut sum = 0;
        for i in 0..3 {
            let text = replicas.metrics(i).await;
            sum += text
                .lines()
                .find_map(|l| {
                    l.strip_prefix(
                        "stsbridge_partner_limited_total{issuer=\"partner\",limit=\"rate\"} ",
                    )
                })
                .map_or(0, |v| v.parse::<u64>().unwrap());
        }
        sum
    };
    assert_eq!(metrics, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_refuses_single_use_serves_the_rest_and_recovers_without_restart() {
    let mut redis = Redis::start();
    let shared = format!(
        "{{ redis: {{ url: \"{}\", timeout: 200ms }} }}",
        redis.url()
    );
    let replicas = Replicas::start(3, Some(&shared), &[]).await;
    for i in 0..3 {
        assert_eq!(replicas.ask_on(i, &replicas.ci_token()).await.0, 200);
    }

    redis.stop();
    for i in 0..3 {
        let (status, body, retry_after) = replicas.ask_on(i, &replicas.ci_token()).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .ends_with("(shared_state_unavailable)"),
            "{body}"
        );
        assert_eq!(retry_after, Some(1));
        let event = replicas.bridges[i]
            .audit_event(body["decision_id"].as_str().unwrap())
            .await;
        assert_eq!(event["reason"], "shared_state_unavailable");
        assert_eq!(event["outcome"], "error");
        // Other issuers are still served, limited by this replica's own buckets.
        let (status, body, _) = replicas.ask_on(i, &replicas.partner_token()).await;
        assert_eq!(status, 200, "{body}");
    }
    replicas.until_shared_state("degraded").await;
    for i in 0..3 {
        let (code, body) = replicas.readyz(i).await;
        assert_eq!(code, 200, "degraded, still ready: {body}");
        assert_eq!(body["shared_state"]["reason"], "shared_state_unavailable");
        let metrics = replicas.metrics(i).await;
        assert!(
            metrics.contains("\nstsbridge_shared_state_fallback 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("stsbridge_shared_state_errors_total{op="),
            "{metrics}"
        );
        // Nothing about the error's text on the unauthenticated endpoint.
        assert!(!body.to_string().contains("refused"), "{body}");
    }
    let logs = replicas.bridges[0].stderr();
    assert_eq!(
        logs.matches("shared state (redis) unavailable").count(),
        1,
        "logged once per outage: {logs}"
    );

    redis.start_again();
    replicas.until_shared_state("ok").await;
    for i in 0..3 {
        let (status, body, _) = replicas.ask_on(i, &replicas.ci_token()).await;
        assert_eq!(status, 200, "{body}");
        let metrics = replicas.metrics(i).await;
        assert!(
            metrics.contains("\nstsbridge_shared_state_fallback 0\n"),
            "{metrics}"
        );
    }
    // Shared again: one jti, once, across the replicas.
    let token = replicas.ci_token();
    let answers = futures::future::join_all((0..6).map(|_| replicas.ask(&token))).await;
    assert_eq!(count(&answers, 200), 1, "{answers:?}");
}

/// A replica whose Redis has never answered (or only garbage) has never read the revocations, so
/// it serves nothing at all, single use or not, and is not ready: like an issuer whose keys were
/// never fetched. (A replica that read them and then loses Redis keeps serving on the last set:
/// `redis_down_refuses_single_use_serves_the_rest_and_recovers_without_restart`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_or_answers_garbage_never_admits_a_single_use_token() {
    for (what, fake) in [
        ("silent", FakeRedis::silent()),
        ("garbage", FakeRedis::answering(b":1\r\n")),
    ] {
        let shared = format!("{{ redis: {{ url: \"{}\", timeout: 200ms }} }}", fake.url());
        let replicas = Replicas::start_unready(3, &shared).await;
        let started = Instant::now();
        let mut answers = Vec::new();
        for _ in 0..6 {
            answers.push(replicas.ask(&replicas.ci_token()).await);
            answers.push(replicas.ask(&replicas.partner_token()).await);
        }
        eprintln!(
            "{what} redis: {} requests answered in {:?}",
            answers.len(),
            started.elapsed()
        );
        // Every request finished, and none was granted: the revocations were never read.
        assert_eq!(answers.len(), 12);
        for (i, (status, body, _)) in answers.iter().enumerate() {
            assert_eq!(*status, 503, "{what} #{i}: {body}");
            let description = body["error_description"].as_str().unwrap();
            assert!(
                description.contains("revocations_unavailable"),
                "{what} #{i}: {body}"
            );
        }
        assert!(fake.accepted() >= 1, "{what}: stsbridge never connected");
        replicas.until_shared_state_with("degraded", 503).await;
        let (_, ready) = replicas.readyz(0).await;
        assert!(
            ready["problems"]
                .as_array()
                .unwrap()
                .contains(&json!("revocations not loaded")),
            "{ready}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_is_used_when_its_certificate_is_trusted_and_never_when_it_is_not() {
    let pki = stsbridge_e2e::tls::localhost_pki();
    let redis = Redis::start_tls(&pki.cert_pem, &pki.key_pem);
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let shared = format!("{{ redis: {{ url: \"{}\" }} }}", redis.url());
    assert!(shared.contains("rediss://127.0.0.1:"), "{shared}");

    // The roots come from the system (rustls-native-certs), which honours SSL_CERT_FILE.
    let trusted = Replicas::start_with_env(
        1,
        Some(&shared),
        &[],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    )
    .await;
    let token = trusted.ci_token();
    assert_eq!(trusted.ask(&token).await.0, 200);
    assert_eq!(trusted.ask(&token).await.0, 401);
    trusted.until_shared_state("ok").await;
    assert_eq!(redis.cli(&["--tls", "--insecure", "DBSIZE"]).trim(), "1");

    // A certificate no root vouches for: the connection is refused, so is single use.
    let untrusted = Replicas::start_unready(1, &shared).await;
    let (status, body, _) = untrusted.ask(&untrusted.ci_token()).await;
    assert_eq!(status, 503, "{body}");
    untrusted.until_shared_state_with("degraded", 503).await;
}
