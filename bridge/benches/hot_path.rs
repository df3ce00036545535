//! The pieces of one exchange, each on its own: token validation (RS256, ES256), rule lookup with
//! 10, 1,000 and 10,000 rules (exact subjects and glob-heavy), template rendering, assertion
//! minting beside the raw signature, a cache hit, a whole cached exchange, and a whole cold AWS
//! exchange counted in CPU time. `cargo bench -p stsbridge --bench hot_path` (the whole set with the
//! load driver: `cargo bench -p stsbridge`).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "a benchmark: a failed setup step must stop it, and it prints its figures"
)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use stsbridge::cache::CredentialCache;
use stsbridge::config::{Config, IssuerConfig, SigningAlgorithm, TrustConfig};
use stsbridge::issuer::{Issuer, SigningKey};
use stsbridge::mapping::delegation::PriorAct;
use stsbridge::mapping::{Decision, Mappings, RenderInput, render};
use stsbridge::token::{self, ValidatedToken};
use stsbridge_providers::jwt::JwtProvider;
use stsbridge_providers::{AssertionSigner, MintSpec, Providers};

#[path = "load/stands.rs"]
#[allow(dead_code, reason = "only the stand-in STS is used here")]
mod stands;
#[path = "support/mod.rs"]
mod support;

// The allocator of the stsbridge binary: allocation is part of what these figures measure.
#[global_allocator]
static ALLOCATOR: stsbridge::Allocator = stsbridge::Allocator;

const ISSUER: &str = "https://idp.bench.example";
const AUDIENCE: &str = "https://sts.bench.example";

/// A config in `dir` written as an operator would: trust entry `bench` (ISSUER, RS256 and ES256)
/// with the public keys of `idp` in a JWKS file, the mappings directory `dir/mappings` (created
/// empty), a key directory and an audit file in `dir`; `extra` is appended as it is.
fn bench_config(dir: &Path, idp: &[&SigningKey]) -> Config {
    bench_config_with(dir, idp, "")
}

fn bench_config_with(dir: &Path, idp: &[&SigningKey], extra: &str) -> Config {
    let jwks = dir.join("jwks.json");
    let keys: Vec<&Value> = idp.iter().map(|k| k.public_jwk()).collect();
    std::fs::write(&jwks, json!({ "keys": keys }).to_string()).expect("jwks");
    let mappings = dir.join("mappings");
    std::fs::create_dir_all(&mappings).expect("mappings");
    let path = dir.join("stsbridge.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nlisten: 127.0.0.1:0\nissuer:\n  url: https://stsbridge.bench.example\n  keys: {{ dir: {keys}, algorithm: ES256 }}\ntrust:\n  - name: bench\n    issuer: {ISSUER}\n    audiences: [{AUDIENCE}]\n    jwks: {{ file: {jwks} }}\n    algorithms: [RS256, ES256]\nmappings: {mappings}\naudit: {{ file: {audit} }}\n{extra}",
            keys = dir.join("keys").display(),
            jwks = jwks.display(),
            mappings = mappings.display(),
            audit = dir.join("audit.jsonl").display(),
        ),
    )
    .expect("config");
    stsbridge::config::load(&path).expect("the config loads")
}

/// The trust entry of [`bench_config`], for the benchmarks that need only the rules.
fn bench_trust() -> TrustConfig {
    let dir = tempfile::tempdir().expect("tempdir");
    bench_config(dir.path(), &[]).trust.remove(0)
}

fn now() -> SystemTime {
    SystemTime::now()
}

/// A token of service account `api` in `namespace`, signed by `key`.
fn signed(key: &SigningKey, namespace: &str) -> String {
    let sub = format!("system:serviceaccount:{namespace}:api");
    support::token(
        key,
        (ISSUER, AUDIENCE),
        &sub,
        namespace,
        "4c6e1f0a-bench",
        token::unix_seconds(now()),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn validation(c: &mut Criterion) {
    let rsa = SigningKey::generate(SigningAlgorithm::Rs256)
        .expect("key")
        .0;
    let ec = SigningKey::generate(SigningAlgorithm::Es256)
        .expect("key")
        .0;
    let jwks = json!({ "keys": [rsa.public_jwk(), ec.public_jwk()] });
    let (keys, _) = token::keys::parse_jwks(jwks.to_string().as_bytes()).expect("jwks");
    let dir = tempfile::tempdir().expect("tempdir");
    let trust = bench_config(dir.path(), &[&rsa, &ec]).trust.remove(0);
    let mut group = c.benchmark_group("validate");
    for (name, key) in [("RS256", &rsa), ("ES256", &ec)] {
        let raw = signed(key, "payments");
        let at = now();
        token::verify(token::parse(&raw).expect("parse"), &trust, Some(&keys), at).expect("valid");
        group.bench_function(name, |b| {
            b.iter(|| {
                let parsed = token::parse(black_box(&raw)).expect("parse");
                token::verify(parsed, &trust, Some(&keys), at).expect("valid")
            })
        });
    }
    group.finish();
}

const TARGETS: &str = r#"version: 1
targets:
  - name: orders-aws
    aws:
      role_arn: arn:aws:iam::123456789012:role/orders
      duration: 1h
      session_name: "{{ subject }}"
      source_identity: "{{ claims[\"kubernetes.io\"].serviceaccount.name }}"
      session_tags:
        namespace: '{{ claims["kubernetes.io"].namespace }}'
        issuer: "{{ issuer }}"
  - name: orders-api
    jwt:
      audience: orders-api
      scopes: [orders:read, orders:write]
      lifetime: 5m
"#;

/// A mappings directory with `rules` rules for issuer `bench`; the last one matches `subject`.
fn rule_set(dir: &Path, rules: usize, globs: bool, trust: &TrustConfig) -> (Mappings, String) {
    std::fs::write(dir.join("targets.yaml"), TARGETS).expect("targets");
    let mut text = String::from("version: 1\nrules:\n");
    for i in 0..rules {
        let subject = if !globs {
            format!("\"system:serviceaccount:ns-{i}:api\"")
        } else {
            // Prefix, suffix and middle globs in turn: the index's string tests and its glob set.
            match i % 3 {
                0 => format!("{{ glob: \"system:serviceaccount:ns-{i}:*\" }}"),
                1 => format!("{{ glob: \"*:ns-{i}:api\" }}"),
                _ => format!("{{ glob: \"system:*:ns-{i}:*\" }}"),
            }
        };
        text.push_str(&format!(
            "  - name: rule-{i}\n    issuer: bench\n    subject: {subject}\n    claims: {{ \"/kubernetes.io/namespace\": ns-{i} }}\n    allow: [orders-aws, orders-api]\n"
        ));
    }
    std::fs::write(dir.join("rules.yaml"), text).expect("rules");
    let (mappings, _) =
        Mappings::load_with_trust(dir, std::slice::from_ref(trust), dir).expect("the rules load");
    let last = rules - 1;
    (mappings, format!("system:serviceaccount:ns-{last}:api"))
}

fn validated(subject: &str, namespace: &str) -> ValidatedToken {
    let claims = json!({
        "iss": ISSUER, "sub": subject, "aud": AUDIENCE,
        "kubernetes.io": { "namespace": namespace, "serviceaccount": { "name": "api" } },
    });
    ValidatedToken {
        trust: "bench".into(),
        issuer: ISSUER.into(),
        subject: subject.into(),
        claims: claims.as_object().cloned().unwrap_or_default(),
        jti: None,
        expires_at: u64::MAX / 2,
    }
}

fn lookup(c: &mut Criterion) {
    let trust = bench_trust();
    let mut group = c.benchmark_group("lookup");
    let mut per_decision = Vec::new();
    for globs in [false, true] {
        for rules in [10, 1_000, 10_000] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (mappings, subject) = rule_set(dir.path(), rules, globs, &trust);
            let namespace = format!("ns-{}", rules - 1);
            let token = validated(&subject, &namespace);
            assert!(matches!(
                mappings.decide_for(&token, &[], "orders-aws"),
                Decision::Allow { .. }
            ));
            let kind = if globs { "glob" } else { "exact" };
            group.bench_function(format!("{kind} subjects, {rules} rules"), |b| {
                b.iter(|| {
                    matches!(
                        mappings.decide_for(black_box(&token), &[], "orders-aws"),
                        Decision::Allow { .. }
                    )
                })
            });
            // The same decision timed by hand, for the ratio the README quotes.
            let runs = 200_000;
            let started = Instant::now();
            for _ in 0..runs {
                black_box(mappings.decide_for(black_box(&token), &[], "orders-aws"));
            }
            per_decision.push((kind, rules, started.elapsed() / runs));
        }
    }
    group.finish();
    for (kind, rules, t) in &per_decision {
        println!(
            "lookup: {kind} subjects, {rules} rules: {:.0} ns per decision",
            t.as_nanos()
        );
    }
    let of = |kind: &str, rules: usize| {
        per_decision
            .iter()
            .find(|(k, r, _)| *k == kind && *r == rules)
            .map_or(1.0, |(_, _, t)| t.as_secs_f64())
    };
    println!(
        "lookup: 10,000 exact-subject rules take {:.2}x the time of 10 (target <= 2); glob-heavy {:.2}x",
        of("exact", 10_000) / of("exact", 10),
        of("glob", 10_000) / of("glob", 10)
    );
}

fn rendering(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mappings, subject) = rule_set(dir.path(), 10, false, &bench_trust());
    let token = validated(&subject, "ns-9");
    let mut group = c.benchmark_group("render");
    for target in ["orders-aws", "orders-api"] {
        let target = Arc::clone(mappings.target(target).expect("target"));
        let input = RenderInput {
            token: &token,
            raw_token: "unused",
            requested_scopes: None,
            actor: None,
            prior_act: &PriorAct::Absent,
        };
        render(&target, &input).expect("renders");
        group.bench_function(target.name.to_string(), |b| {
            b.iter(|| render(black_box(&target), &input).expect("renders"))
        });
    }
    group.finish();
}

fn issuer(alg: SigningAlgorithm) -> Arc<Issuer> {
    Arc::new(
        Issuer::load(&IssuerConfig {
            url: "https://stsbridge.bench.example".into(),
            key_dir: None,
            algorithm: alg,
            assertion_lifetime: Duration::from_secs(300),
            publish_before_use: Duration::ZERO,
        })
        .expect("issuer"),
    )
}

fn minting(c: &mut Criterion) {
    let mut group = c.benchmark_group("mint");
    for (name, alg) in [
        ("RS256", SigningAlgorithm::Rs256),
        ("ES256", SigningAlgorithm::Es256),
    ] {
        let issuer = issuer(alg);
        let mut extra = serde_json::Map::new();
        extra.insert("scope".into(), Value::from("orders:read orders:write"));
        let spec = MintSpec {
            subject: "system:serviceaccount:payments:api",
            audience: "orders-api",
            lifetime: None,
            extra,
        };
        group.bench_function(format!("assertion, {name}"), |b| {
            b.iter(|| issuer.mint(black_box(spec.clone()), now()).expect("mint"))
        });
        let key = SigningKey::generate(alg).expect("key").0;
        let message = [b'x'; 600];
        group.bench_function(format!("raw signature, {name}"), |b| {
            b.iter(|| key.sign(black_box(&message)).expect("sign"))
        });
    }
    group.finish();
}

fn cache_hit(c: &mut Criterion) {
    let rt = runtime();
    let signer: Arc<dyn AssertionSigner> = issuer(SigningAlgorithm::Es256);
    let providers = Providers::default().jwt(Arc::new(JwtProvider::new(signer)));
    let cache = CredentialCache::new(100_000, providers);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mappings, subject) = rule_set(dir.path(), 10, false, &bench_trust());
    let token = validated(&subject, "ns-9");
    let target = Arc::clone(mappings.target("orders-api").expect("target"));
    let input = RenderInput {
        token: &token,
        raw_token: "unused",
        requested_scopes: None,
        actor: None,
        prior_act: &PriorAct::Absent,
    };
    let key = Arc::new(render(&target, &input).expect("renders"));
    let (_, first) = rt
        .block_on(cache.get(Arc::clone(&key), now()))
        .expect("the first fetch mints");
    assert_eq!(first.as_str(), "miss");
    let mut group = c.benchmark_group("cache");
    group.bench_function("hit", |b| {
        b.iter(|| {
            // The request is rendered afresh for each exchange, so the lookup hashes and compares
            // a key that is equal to, not the same as, the stored one.
            let fresh = Arc::new((*key).clone());
            rt.block_on(cache.get(fresh, now())).expect("hit")
        })
    });
    group.finish();
}

/// A `/v1/credentials/{target}` request with `token`, as the HTTP layer would hand it over.
fn credentials_request<'a>(
    token: &'a str,
    target: &'a str,
) -> stsbridge::exchange::ExchangeRequest<'a> {
    stsbridge::exchange::ExchangeRequest {
        token,
        target,
        endpoint: stsbridge::exchange::Endpoint::Credentials,
        client: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 40000))),
        scopes: None,
        actor_token: None,
        request_id: Some("bench-request"),
        client_names: &[],
        client_thumbprint: None,
        dpop: None,
    }
}

/// A whole exchange without HTTP, as the service runs it (validation, limits, decision, render,
/// cache, audit line to a file, metrics) with the credential already cached: what stsbridge adds
/// to the HTTP server's own cost per request.
fn exchange(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let idp = SigningKey::generate(SigningAlgorithm::Rs256)
        .expect("key")
        .0;
    let config = bench_config(dir.path(), &[&idp]);
    rule_set(&config.mappings_dir, 10, false, &config.trust[0]);
    let bridge = rt
        .block_on(async { stsbridge::Bridge::start(config) })
        .expect("starts");
    // The token of the namespace the last of the 10 rules allows.
    let raw = signed(&idp, "ns-9");
    let request = || credentials_request(&raw, "orders-api");
    rt.block_on(bridge.exchange(request()))
        .expect("the first exchange is granted");
    let mut group = c.benchmark_group("exchange");
    group.bench_function("cached credential, token repeated", |b| {
        b.iter(|| {
            rt.block_on(bridge.exchange(black_box(request())))
                .expect("granted")
        })
    });
    group.finish();
}

/// CPU time of every thread of this process but the stand-in STS's (`/proc/self/task/*/schedstat`,
/// nanoseconds on CPU): the serving thread, and the blocking pool that writes the audit file.
fn cpu_but_sts() -> Duration {
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = task.path();
        if std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == STS_THREAD) {
            continue;
        }
        nanos += std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
    }
    Duration::from_nanos(nanos)
}

const STS_THREAD: &str = "stand-in-sts";

/// A whole cold AWS exchange: a new subject each time, so a new cache key and an upstream call
/// (an ES256 assertion, `AssumeRoleWithWebIdentity` through the AWS SDK to the load driver's
/// stand-in STS, which answers at once from its own thread), the credential built and cached.
/// Counted in CPU time of everything but the STS (Linux only): what a cold exchange costs
/// stsbridge itself; the ES256 signature it includes is `mint/raw signature, ES256`.
fn cold(c: &mut Criterion) {
    if std::fs::metadata("/proc/thread-self/schedstat").is_err() {
        println!("exchange: cold AWS credential: skipped (needs /proc/*/schedstat)");
        return;
    }
    let sts_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(STS_THREAD)
        .enable_all()
        .build()
        .expect("STS runtime");
    let sts_url = sts_runtime
        .block_on(stands::sts(Arc::new(stands::Sts::default())))
        .expect("stand-in STS");
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let idp = SigningKey::generate(SigningAlgorithm::Es256)
        .expect("key")
        .0;
    let config = bench_config_with(
        dir.path(),
        &[&idp],
        &format!(
            "providers:\n  aws: {{ region: us-east-1, endpoint: \"{sts_url}\" }}\ncache: {{ max_entries: 10000000 }}\n"
        ),
    );
    std::fs::write(config.mappings_dir.join("targets.yaml"), TARGETS).expect("targets");
    std::fs::write(
        config.mappings_dir.join("rules.yaml"),
        "version: 1\nrules:\n  - name: cold\n    issuer: bench\n    subject: { glob: \"cold-*\" }\n    allow: [orders-aws]\n",
    )
    .expect("rules");
    let bridge = rt
        .block_on(async { stsbridge::Bridge::start(config) })
        .expect("starts");
    let mut n = 0usize;
    let mut tokens = |count: u64| -> Vec<String> {
        (0..count)
            .map(|_| {
                n += 1;
                support::token(
                    &idp,
                    (ISSUER, AUDIENCE),
                    &format!("cold-{n}"),
                    "ns",
                    &format!("cold-{n}"),
                    token::unix_seconds(now()),
                )
            })
            .collect()
    };
    let exchange = |raw: &str| {
        rt.block_on(bridge.exchange(credentials_request(raw, "orders-aws")))
            .map(|e| e.cache)
    };
    // Connections to the STS opened, the first key cached.
    for raw in tokens(10) {
        let event = exchange(&raw).expect("the first exchanges are granted");
        assert_eq!(event.as_str(), "miss");
    }
    let mut group = c.benchmark_group("exchange");
    group.sample_size(20);
    group.bench_function("cold AWS credential, CPU time (STS not counted)", |b| {
        b.iter_custom(|iters| {
            let batch = tokens(iters);
            let started = cpu_but_sts();
            let misses = batch
                .iter()
                .filter(|raw| exchange(raw).expect("granted").as_str() == "miss")
                .count();
            let spent = cpu_but_sts().saturating_sub(started);
            // Every exchange measured was cold (the figure would otherwise mix in cache hits).
            assert_eq!(misses, batch.len());
            spent
        })
    });
    group.finish();
    drop(sts_runtime);
}

criterion_group!(
    benches, validation, lookup, rendering, minting, cache_hit, exchange, cold
);
criterion_main!(benches);
