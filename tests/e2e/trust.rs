//! Trust between parties: what one trusted party must never be able to do to another, without
//! forging anything. Each test here failed on the build before its rule existed.

use serde_json::{Value, json};
use stsbridge_e2e::idp::unix_now;
use stsbridge_e2e::{BRIDGE_URL, TestIdp};

use crate::{MAPPINGS, Setup, Stack, cli, verify_with_bridge_jwks, write_config};

/// The claims of a token stsbridge minted (read without verifying: the tests here verify where
/// it matters with [`verify_with_bridge_jwks`]).
fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// A second trusted issuer, `partner`, beside `ci`, with `extra` YAML inside its entry.
fn partner_entry(partner: &TestIdp, extra: &str) -> String {
    format!(
        "  - name: partner\n    issuer: {}\n    audiences: [{BRIDGE_URL}]\n    jwks: {{ discovery: true }}\n    allow_insecure_loopback: true\n{extra}",
        partner.issuer
    )
}

/// A stack trusting `ci` and a second IdP, `partner` (its entry with `extra` YAML), whose
/// `svc:*` subjects may obtain `api`.
async fn with_partner(extra: &str) -> (TestIdp, Stack) {
    let partner = TestIdp::start().await;
    let trust = partner_entry(&partner, extra);
    let mappings = format!(
        "{MAPPINGS}  - name: partner-calls-api\n    issuer: partner\n    subject: {{ glob: \"svc:*\" }}\n    allow: [api]\n"
    );
    let stack = Stack::start_with_files(
        TestIdp::start().await,
        Setup {
            trust_extra: &trust,
            mappings: Some(&mappings),
            ..Setup::default()
        },
        &[],
    )
    .await;
    (partner, stack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_cannot_launder_a_delegation_chain_through_its_own_act_claim() {
    let (partner, stack) = with_partner("").await;
    // The partner's IdP claims that an identity of another issuer acted for it.
    let forged_chain = json!({ "sub": "repo:acme/app:ref:refs/heads/main", "iss": stack.idp.issuer, "admin": true });
    let subject = partner.token("svc:alice", json!({ "act": forged_chain }));
    let (status, body) = stack.exchange(&subject, "api", &[]).await;
    assert_eq!(status, 200, "{body}");
    let claims = verify_with_bridge_jwks(
        &stack,
        body["access_token"].as_str().unwrap(),
        "billing-api",
    )
    .await;
    assert!(
        claims.get("act").is_none(),
        "stsbridge signed a chain it never saw: {claims}"
    );
    let events = stack.bridge.audit_events_at_least(1).await;
    let event = events.iter().find(|e| e["reason"] == "granted").unwrap();
    assert_eq!(event["prior_act"], "dropped", "{event}");

    // Non-object values are dropped the same way, never signed.
    let subject = partner.token("svc:alice", json!({ "act": "repo:acme/app" }));
    let (status, body) = stack.exchange(&subject, "api", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        claims_of(body["access_token"].as_str().unwrap())
            .get("act")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_trusted_with_accept_act_keeps_only_well_formed_chains() {
    let (partner, stack) = with_partner("    accept_act: true\n").await;
    let chain = json!({ "sub": "svc:gateway", "iss": partner.issuer, "extra": {"x": 1} });
    let subject = partner.token("svc:alice", json!({ "act": chain }));
    let (status, body) = stack.exchange(&subject, "api", &[]).await;
    assert_eq!(status, 200, "{body}");
    let act = claims_of(body["access_token"].as_str().unwrap())["act"].clone();
    // Kept, but only what identifies each actor.
    assert_eq!(act, json!({ "sub": "svc:gateway", "iss": partner.issuer }));

    for malformed in [
        json!("svc:gateway"),
        json!({ "iss": partner.issuer }),
        json!({ "sub": 7 }),
        json!({ "sub": "a", "act": { "sub": "b", "act": "c" } }),
        json!({ "sub": "1", "act": { "sub": "2", "act": { "sub": "3", "act": { "sub": "4", "act": { "sub": "5" } } } } }),
    ] {
        let subject = partner.token("svc:alice", json!({ "act": malformed }));
        let (status, body) = stack.exchange(&subject, "api", &[]).await;
        assert_eq!(status, 400, "{malformed}: {body}");
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
}

/// `svc:alice` of `ci` exchanged for `api` with `actor` acting for it.
async fn exchange_as(stack: &Stack, actor: String) -> (u16, Value) {
    let subject = stack.idp.token("svc:alice", json!({}));
    stack.exchange_for(&subject, "api", &actor).await
}

/// The audit event of the refusal `body` names `reason`.
async fn assert_reason(stack: &Stack, body: &Value, reason: &str) {
    let event = stack
        .bridge
        .audit_event(body["decision_id"].as_str().unwrap())
        .await;
    assert_eq!(event["reason"], reason, "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_must_be_listed_by_the_rule_and_by_may_act() {
    // The shared mappings' services-call-api rule lists svc:gateway of ci as its one actor; the
    // partner's subjects may obtain api too, but it names no actor.
    let (partner, stack) = with_partner("").await;
    // The listed actor.
    let (status, body) = exchange_as(&stack, stack.idp.token("svc:gateway", json!({}))).await;
    assert_eq!(status, 200, "{body}");
    // Any other token of a trusted issuer is not an actor.
    for actor in [
        stack.idp.token("svc:intruder", json!({})),
        partner.token("svc:gateway", json!({})),
    ] {
        let (status, body) = exchange_as(&stack, actor).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"], "access_denied");
        assert_reason(&stack, &body, "actor_not_allowed").await;
    }
    // A subject that names who may act for it (RFC 8693 may_act) narrows it further.
    let only_other = stack.idp.token(
        "svc:alice",
        json!({ "may_act": { "sub": "svc:other", "iss": stack.idp.issuer } }),
    );
    let actor = stack.idp.token("svc:gateway", json!({}));
    let (status, body) = stack.exchange_for(&only_other, "api", &actor).await;
    assert_eq!(status, 403, "{body}");
    assert_reason(&stack, &body, "actor_not_allowed").await;
    let names_gateway = stack.idp.token(
        "svc:alice",
        json!({ "may_act": { "sub": "svc:gateway", "iss": stack.idp.issuer } }),
    );
    let actor = stack.idp.token("svc:gateway", json!({}));
    let (status, body) = stack.exchange_for(&names_gateway, "api", &actor).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_token_spent_as_subject_is_not_accepted_again_as_actor() {
    let stack = Stack::start(Setup {
        trust_extra: "    replay: reject\n",
        ..Setup::default()
    })
    .await;
    let gateway = stack.idp.token("svc:gateway", json!({}));
    // Spent once, as a subject.
    let (status, body) = stack.exchange(&gateway, "api", &[]).await;
    assert_eq!(status, 200, "{body}");
    // Then offered as the actor of other subjects, again and again.
    for _ in 0..3 {
        let subject = stack.idp.token("svc:alice", json!({}));
        let (status, body) = stack.exchange_for(&subject, "api", &gateway).await;
        assert_ne!(status, 200, "a spent token acted again: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("replayed_jti")),
            "{body}"
        );
    }
    // Spent as an actor first, it is spent as a subject too.
    let actor = stack.idp.token("svc:gateway", json!({}));
    let subject = stack.idp.token("svc:alice", json!({}));
    let (status, body) = stack.exchange_for(&subject, "api", &actor).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = stack.exchange(&actor, "api", &[]).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stsbridge_tokens_come_back_under_the_built_in_trust_name_with_qualified_subjects() {
    let mappings = format!(
        "{MAPPINGS}  - name: delegated-calls\n    issuer: stsbridge\n    subject: {{ glob: \"ci:svc:*\" }}\n    allow: [api]\n    actors:\n      - {{ issuer: ci, subject: \"svc:gateway\" }}\n"
    );
    let stack = Stack::start(Setup {
        mappings: Some(&mappings),
        ..Setup::default()
    })
    .await;
    let subject = stack.idp.token("svc:alice", json!({}));
    let (status, body) = stack.exchange(&subject, "api", &[]).await;
    assert_eq!(status, 200, "{body}");
    let minted = body["access_token"].as_str().unwrap().to_owned();
    let claims = verify_with_bridge_jwks(&stack, &minted, "billing-api").await;
    // Qualified by the trust entry that asserted it: no other issuer's "svc:alice" matches it.
    assert_eq!(claims["sub"], "ci:svc:alice");

    // The minted token comes back as a subject, with no trust entry for stsbridge's own URL.
    let actor = stack.idp.token("svc:gateway", json!({}));
    let (status, body) = stack.exchange_for(&minted, "api", &actor).await;
    assert_eq!(status, 200, "{body}");
    let again = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(
        again["sub"], "ci:svc:alice",
        "already qualified, kept as it is"
    );
    assert_eq!(again["act"]["sub"], "svc:gateway");

    // The own issuer URL may not be configured as an ordinary trust entry.
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let own = format!(
        "  - name: self\n    issuer: {BRIDGE_URL}\n    audiences: [billing-api]\n    jwks: {{ uri: {BRIDGE_URL}/.well-known/jwks.json }}\n"
    );
    write_config(
        dir.path(),
        &idp,
        &Setup {
            trust_extra: &own,
            ..Setup::default()
        },
    );
    let (code, _, err) = cli::run(dir.path(), &["check", "--config", "stsbridge.yaml"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("stsbridge.yaml: trust[1].issuer"), "{err}");
    assert!(err.contains("built in"), "{err}");
    // Nor may the reserved names.
    for reserved in ["stsbridge", "target"] {
        let entry = format!(
            "  - name: {reserved}\n    issuer: https://idp.example\n    audiences: [x]\n    jwks: {{ uri: https://idp.example/jwks }}\n"
        );
        write_config(
            dir.path(),
            &idp,
            &Setup {
                trust_extra: &entry,
                ..Setup::default()
            },
        );
        let (code, _, err) = cli::run(dir.path(), &["check", "--config", "stsbridge.yaml"]);
        assert_eq!(code, 64, "{reserved}: {err}");
        assert!(err.contains("trust[1].name"), "{err}");
        assert!(err.contains("reserved"), "{err}");
    }
}

/// Runs `stsbridge check` on the default config with `mappings` as its mapping file.
fn check_mappings(mappings: &str) -> (i32, String) {
    let idp_issuer = "http://127.0.0.1:9";
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
    std::fs::write(dir.path().join("mappings/test.yaml"), mappings).unwrap();
    std::fs::write(
        dir.path().join("stsbridge.yaml"),
        format!(
            "version: 1\nlisten: 127.0.0.1:0\nissuer: {{ url: {BRIDGE_URL}, keys: {{ dir: keys }} }}\ntrust:\n  - {{ name: ci, issuer: \"{idp_issuer}\", audiences: [{BRIDGE_URL}], jwks: {{ uri: \"{idp_issuer}/jwks\" }}, allow_insecure_loopback: true }}\nmappings: mappings\n"
        ),
    )
    .unwrap();
    let (code, _, err) = cli::run(dir.path(), &["check", "--config", "stsbridge.yaml"]);
    (code, err)
}

const POOL: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/stsbridge/providers/stsbridge";

#[test]
fn internal_tokens_never_look_like_cloud_assertions() {
    let rule = "rules:\n  - { name: r, issuer: ci, subject: { any: true }, allow: [\"*\"] }\n";
    for audience in [
        "sts.amazonaws.com",
        "api://AzureADTokenExchange",
        POOL,
        "https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/v",
    ] {
        let mappings = format!(
            "version: 1\ntargets:\n  - name: fake\n    jwt: {{ audience: \"{audience}\" }}\n{rule}"
        );
        let (code, err) = check_mappings(&mappings);
        assert_eq!(code, 64, "{audience}: {err}");
        assert!(err.contains("targets[0].jwt.audience"), "{err}");
        assert!(err.contains(audience), "{err}");
    }
    // An audience a loaded cloud target asserts to, whatever its form.
    let mappings = format!(
        "version: 1\ntargets:\n  - name: gcs\n    gcp: {{ audience: \"{POOL}\", assertion_audience: \"https://pool.example\" }}\n  - name: fake\n    jwt: {{ audience: \"https://pool.example\" }}\n{rule}"
    );
    let (code, err) = check_mappings(&mappings);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("gcs"), "names the cloud target: {err}");
    // A JWT subject that reads like a cloud assertion's.
    let mappings = format!(
        "version: 1\ntargets:\n  - name: fake\n    jwt: {{ audience: billing, subject: \"target:deploy\" }}\n{rule}"
    );
    let (code, err) = check_mappings(&mappings);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("targets[0].jwt.subject"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_subject_never_starts_with_target() {
    let mappings = MAPPINGS.replace(
        "jwt: { audience: billing-api,",
        "jwt: { subject: \"{{ claims.name }}\", audience: billing-api,",
    );
    assert_ne!(mappings, MAPPINGS);
    let stack = Stack::start(Setup {
        mappings: Some(&mappings),
        ..Setup::default()
    })
    .await;
    let subject = stack
        .idp
        .token("svc:alice", json!({ "name": "target:deploy" }));
    let (status, body) = stack.exchange(&subject, "api", &[]).await;
    assert_eq!(status, 403, "{body}");
    let subject = stack.idp.token("svc:alice", json!({ "name": "alice" }));
    let (status, body) = stack.exchange(&subject, "api", &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[test]
fn two_targets_never_share_a_subject_in_one_cloud_trust_scope() {
    let rule = "rules:\n  - { name: r, issuer: ci, subject: { any: true }, allow: [\"*\"] }\n";
    // Names that agree on their first 120 characters: truncated to 127 bytes, one sub.
    let stem = "a".repeat(120);
    let mappings = format!(
        "version: 1\ntargets:\n  - name: {stem}-reader\n    gcp: {{ audience: \"{POOL}\", service_account: readers@shop-prod.iam.gserviceaccount.com }}\n  - name: {stem}-admin1\n    gcp: {{ audience: \"{POOL}\", service_account: admins@shop-prod.iam.gserviceaccount.com }}\n{rule}"
    );
    let (code, err) = check_mappings(&mappings);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("127 bytes"), "{err}");

    // The same literal assertion subject for two service accounts in one pool.
    let mappings = format!(
        "version: 1\ntargets:\n  - name: reader\n    assertion_subject: shared\n    gcp: {{ audience: \"{POOL}\", service_account: readers@shop-prod.iam.gserviceaccount.com }}\n  - name: admin\n    assertion_subject: shared\n    gcp: {{ audience: \"{POOL}\", service_account: admins@shop-prod.iam.gserviceaccount.com }}\n{rule}"
    );
    let (code, err) = check_mappings(&mappings);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("targets[1].assertion_subject"), "{err}");
    assert!(err.contains("reader"), "names the other target: {err}");

    // The same subject for the same identity, or in different pools, is fine.
    let other_pool = POOL.replace("/stsbridge/providers", "/other/providers");
    let mappings = format!(
        "version: 1\ntargets:\n  - name: reader\n    assertion_subject: shared\n    gcp: {{ audience: \"{POOL}\", service_account: readers@shop-prod.iam.gserviceaccount.com }}\n  - name: reader-short\n    assertion_subject: shared\n    gcp: {{ audience: \"{POOL}\", service_account: readers@shop-prod.iam.gserviceaccount.com, lifetime: 10m }}\n  - name: admin\n    assertion_subject: shared\n    gcp: {{ audience: \"{other_pool}\", service_account: admins@shop-prod.iam.gserviceaccount.com }}\n{rule}"
    );
    let (code, err) = check_mappings(&mappings);
    assert_eq!(code, 0, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_validation_ends_when_its_key_is_withdrawn() {
    let stack = Stack::start(Setup::default()).await;
    // A token whose header names no key.
    let claims = stack.idp.claims("svc:alice");
    let no_kid = stack.idp.sign_parts(
        br#"{"alg":"RS256","typ":"JWT"}"#,
        claims.to_string().as_bytes(),
    );
    let (status, body, _) = stack.credentials("api", &format!("Bearer {no_kid}")).await;
    assert_eq!(status, 200, "{body}");
    // The IdP withdraws that key; a token of the new key makes stsbridge fetch the new set.
    stack.idp.rotate();
    let fresh = stack.idp.token("svc:alice", json!({}));
    let (status, body, _) = stack.credentials("api", &format!("Bearer {fresh}")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = stack.credentials("api", &format!("Bearer {no_kid}")).await;
    assert_eq!(
        status, 401,
        "a withdrawn key's token is still honoured: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_iat_is_refused_unless_its_issuer_opts_out() {
    let (partner, stack) = with_partner("    require_iat: false\n").await;
    let exp = json!(unix_now() + 300);
    let undated = stack
        .idp
        .token("svc:alice", json!({ "iat": null, "exp": exp }));
    let (status, body, _) = stack.credentials("api", &format!("Bearer {undated}")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.ends_with("(missing_iat)")),
        "{body}"
    );
    let undated = partner.token("svc:alice", json!({ "iat": null, "exp": exp }));
    let (status, body, _) = stack.credentials("api", &format!("Bearer {undated}")).await;
    assert_eq!(status, 200, "opted out: {body}");
}
