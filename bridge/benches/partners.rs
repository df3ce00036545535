//! Ten thousand partners, each onboarded by its own partner file (a trust entry, a target, an allow
//! rule and a deny rule): how long a load (start or hot reload) takes, and what a decision costs
//! with all of them loaded.
//!
//! `cargo bench -p stsbridge --bench partners`

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark: a failed setup step must stop it, and it prints its figures"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use stsbridge::mapping::{Decision, Mappings};
use stsbridge::token::ValidatedToken;
use stsbridge::token::jwks::JwksManager;

const PARTNERS: usize = 10_000;

fn write_partners(dir: &Path) {
    for i in 0..PARTNERS {
        let text = format!(
            r#"version: 1
trust:
  - name: partner-{i}
    issuer: https://idp-{i}.partners.example/oauth2
    audiences: [https://sts.example.com]
    jwks: {{ uri: "https://idp-{i}.partners.example/oauth2/keys" }}
    algorithms: [RS256, ES256]
    explain_denials: true
    rate_limit: 50/s
    burst: 100
    max_concurrent: 20
targets:
  - name: partner-{i}-api
    jwt: {{ audience: orders-api, scopes: [orders:read], lifetime: 5m, subject: "partner:{{{{ issuer }}}}:{{{{ subject }}}}" }}
rules:
  - name: partner-{i}-clients
    issuer: partner-{i}
    subject: {{ glob: "svc-*" }}
    claims: {{ tenant: t{i}, roles: {{ contains: orders-integration }} }}
    allow: [partner-{i}-api]
  - name: partner-{i}-suspended
    issuer: partner-{i}
    subject: {{ one_of: [svc-legacy] }}
    deny: ["*"]
"#
        );
        std::fs::write(dir.join(format!("partner-{i}.yaml")), text).expect("write");
    }
}

/// What a start or a hot reload does with the files: parse and validate every partner file, check
/// names and issuers are unique, index the rules, and set up (lazy) key sets and refreshers.
fn load(dir: &Path, rt: &tokio::runtime::Runtime) -> (Mappings, Arc<JwksManager>) {
    let (mappings, trust) = Mappings::load_with_trust(dir, &[], dir).expect("the partners load");
    let jwks = Arc::new(JwksManager::new(&trust, None).expect("jwks"));
    let _guard = rt.enter();
    for task in jwks.spawn_refreshers() {
        task.abort();
    }
    (mappings, jwks)
}

/// Where a load's time goes: reading, parsing, compiling and indexing, key-set setup.
fn phases(dir: &Path, rt: &tokio::runtime::Runtime) {
    let ms = |t: Instant| format!("{:.0} ms", t.elapsed().as_secs_f64() * 1000.0);
    let t = Instant::now();
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        sources.push((path, text));
    }
    let read = ms(t);
    let t = Instant::now();
    for (path, text) in &sources {
        stsbridge::config::parse_yaml::<stsbridge::mapping::file::MappingFile>(path, text)
            .expect("parse");
    }
    let parse = ms(t);
    let t = Instant::now();
    let (_, trust) = Mappings::load_with_trust(dir, &[], dir).expect("load");
    let whole = ms(t);
    let t = Instant::now();
    let jwks = Arc::new(JwksManager::new(&trust, None).expect("jwks"));
    let keys = ms(t);
    let t = Instant::now();
    let _guard = rt.enter();
    for task in jwks.spawn_refreshers() {
        task.abort();
    }
    println!(
        "phases: read {read}, parse on one core {parse}, read+parse+compile+index {whole}, key sets {keys}, refreshers {}",
        ms(t)
    );
}

fn token(i: usize, sub: &str, tenant: &str) -> ValidatedToken {
    let claims = json!({ "sub": sub, "tenant": tenant, "roles": ["orders-integration"] });
    ValidatedToken {
        trust: format!("partner-{i}"),
        issuer: format!("https://idp-{i}.partners.example/oauth2"),
        subject: sub.to_owned(),
        claims: claims.as_object().cloned().unwrap_or_default(),
        jti: None,
        expires_at: u64::MAX / 2,
    }
}

fn partners(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_partners(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let started = Instant::now();
    let (mappings, jwks) = load(dir.path(), &rt);
    println!(
        "cold load of {PARTNERS} partner files: {} trust entries, {} targets, {} rules in {:.0} ms",
        jwks.status().len(),
        mappings.target_count(),
        mappings.rule_count(),
        started.elapsed().as_secs_f64() * 1000.0
    );

    phases(dir.path(), &rt);

    let mut group = c.benchmark_group("partners");
    group.sample_size(10);
    group.bench_function("load 10k partner files", |b| {
        b.iter_with_large_drop(|| load(dir.path(), &rt));
    });
    group.finish();

    let allowed = token(7_321, "svc-billing", "t7321");
    let wrong_tenant = token(7_321, "svc-billing", "t1");
    let suspended = token(7_321, "svc-legacy", "t7321");
    assert!(matches!(
        mappings.decide_for(&allowed, &[], "partner-7321-api"),
        Decision::Allow { .. }
    ));
    let mut group = c.benchmark_group("decide with 10k partners");
    group.bench_function("allow", |b| {
        b.iter(|| mappings.decide_for(&allowed, &[], "partner-7321-api"));
    });
    group.bench_function("no matching rule", |b| {
        b.iter(|| mappings.decide_for(&wrong_tenant, &[], "partner-7321-api"));
    });
    group.bench_function("deny rule", |b| {
        b.iter(|| mappings.decide_for(&suspended, &[], "partner-7321-api"));
    });
    group.finish();
}

criterion_group!(benches, partners);
criterion_main!(benches);
