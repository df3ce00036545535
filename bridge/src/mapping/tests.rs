use std::time::Instant;

use serde_json::json;

use super::delegation::PriorAct;
use super::*;

fn trust_names() -> HashSet<String> {
    ["dev", "github", "kubernetes", "partner-globex", "spire"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn load(files: &[(&str, &str)]) -> Result<Mappings, ConfigErrors> {
    let dir = dir_with(files);
    Mappings::load(dir.path(), &trust_names())
}

fn errors(files: &[(&str, &str)]) -> Vec<ConfigError> {
    load(files).unwrap_err().0
}

fn token(trust: &str, claims: serde_json::Value) -> ValidatedToken {
    let claims = claims.as_object().unwrap().clone();
    ValidatedToken {
        trust: trust.into(),
        issuer: format!("https://{trust}"),
        subject: claims["sub"].as_str().unwrap().into(),
        jti: None,
        expires_at: 0,
        claims,
    }
}

/// The repository's `mappings/`, with the issuers their rules name.
pub(in crate::mapping) fn shipped() -> Mappings {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings");
    Mappings::load(&dir, &trust_names()).unwrap_or_else(|e| panic!("{e}"))
}

fn allowed(m: &Mappings, t: &ValidatedToken, target: &str) -> bool {
    matches!(m.decide(t, target), Decision::Allow { .. })
}

#[test]
fn every_shipped_mapping_file_loads() {
    let m = shipped();
    let names: Vec<String> = m
        .files()
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for f in [
        "ci-deploy.yaml",
        "cross-account.yaml",
        "partner-globex.yaml",
        "quickstart.yaml",
        "serverless.yaml",
    ] {
        assert!(names.contains(&f.to_owned()), "{f} not loaded: {names:?}");
    }
}

#[test]
fn ci_deploy_only_main_of_the_reviewed_workflow_reaches_prod() {
    let m = shipped();
    let main = token(
        "github",
        json!({
            "sub": "repo:acme/payments:environment:prod", "repository_owner": "acme", "ref": "refs/heads/main",
            "job_workflow_ref": "acme/workflows/.github/workflows/deploy.yml@refs/heads/main",
            "run_id": "42", "actor": "octocat", "repository": "acme/payments", "workflow": "deploy"
        }),
    );
    let Decision::Allow { rule, target } = m.decide(&main, "payments-prod-deploy") else {
        panic!("main must deploy")
    };
    assert_eq!(rule.name, "payments-main-deploys-prod");
    let input = RenderInput {
        token: &main,
        raw_token: "t",
        requested_scopes: None,
        actor: None,
        prior_act: &PriorAct::Absent,
    };
    let ProviderRequest::Aws(r) = render(target, &input).unwrap() else {
        panic!()
    };
    assert_eq!(r.session_name, "gh-42");
    assert_eq!(r.source_identity.as_deref(), Some("octocat"));
    assert_eq!(
        r.tags,
        vec![
            ("repository".into(), "acme/payments".into()),
            ("workflow".into(), "deploy".into())
        ]
    );
    assert!(
        r.session_policy
            .as_deref()
            .unwrap()
            .contains("DeployPaymentsOnly")
    );
    assert_eq!(
        r.assertion,
        AssertionSource::Mint {
            subject: "target:payments-prod-deploy".into()
        }
    );

    let mut other_workflow = main.clone();
    other_workflow.claims.insert(
        "job_workflow_ref".into(),
        json!("evil/workflows/x.yml@refs/heads/main"),
    );
    assert!(!allowed(&m, &other_workflow, "payments-prod-deploy"));
    let feature = token(
        "github",
        json!({"sub": "repo:acme/payments:ref:refs/heads/feature", "repository_owner": "acme"}),
    );
    assert!(!allowed(&m, &feature, "payments-prod-deploy"));
    assert!(allowed(&m, &feature, "payments-staging-deploy"));
}

#[test]
fn deny_rules_win_over_allow_rules() {
    let m = shipped();
    let alice = token("dev", json!({"sub": "dev:alice"}));
    let mallory = token("dev", json!({"sub": "dev:mallory"}));
    assert!(allowed(&m, &alice, "hello-api"));
    match m.decide(&mallory, "hello-api") {
        Decision::Deny { rule: Some(r) } => assert_eq!(r.name, "blocked-user"),
        other => panic!("{other:?}"),
    }
    let fork = token(
        "github",
        json!({"sub": "repo:acme/payments:pull_request", "repository_owner": "acme", "event_name": "pull_request_target"}),
    );
    assert!(matches!(
        m.decide(&fork, "payments-staging-deploy"),
        Decision::Deny { rule: Some(_) }
    ));
}

#[test]
fn tokens_of_one_issuer_never_match_another_issuers_rules() {
    let m = shipped();
    let imposter = token(
        "dev",
        json!({"sub": "repo:acme/payments:environment:prod", "repository_owner": "acme"}),
    );
    assert!(!allowed(&m, &imposter, "payments-staging-deploy"));
}

#[test]
fn partner_rules_use_contains_and_one_of() {
    let m = shipped();
    let good = token(
        "partner-globex",
        json!({"sub": "svc-billing", "tenant": "globex", "roles": ["orders-integration"]}),
    );
    assert!(allowed(&m, &good, "partner-orders-api"));
    let no_role = token(
        "partner-globex",
        json!({"sub": "svc-billing", "tenant": "globex", "roles": ["reader"]}),
    );
    assert!(!allowed(&m, &no_role, "partner-orders-api"));
    let suspended = token(
        "partner-globex",
        json!({"sub": "svc-legacy", "tenant": "globex", "roles": ["orders-integration"]}),
    );
    assert!(!allowed(&m, &suspended, "partner-orders-api"));
    let Decision::Allow { target, .. } = m.decide(&good, "partner-orders-api") else {
        panic!()
    };
    let input = RenderInput {
        token: &good,
        raw_token: "t",
        requested_scopes: None,
        actor: None,
        prior_act: &PriorAct::Absent,
    };
    let ProviderRequest::Jwt(r) = render(target, &input).unwrap() else {
        panic!()
    };
    assert_eq!(r.subject, "partner:partner-globex:svc-billing");
    assert_eq!(r.scopes, vec!["orders:create", "orders:read"]);
}

#[test]
fn serverless_reads_nested_kubernetes_claims() {
    let m = shipped();
    let pod = token(
        "kubernetes",
        json!({"sub": "system:serviceaccount:orders:orders-fn", "kubernetes.io": {"namespace": "orders", "serviceaccount": {"name": "orders-fn"}, "pod": {"name": "orders-fn-7d9"}}}),
    );
    let Decision::Allow { target, .. } = m.decide(&pod, "orders-fn-aws") else {
        panic!("pod must be allowed")
    };
    let input = RenderInput {
        token: &pod,
        raw_token: "t",
        requested_scopes: None,
        actor: None,
        prior_act: &PriorAct::Absent,
    };
    let ProviderRequest::Aws(r) = render(target, &input).unwrap() else {
        panic!()
    };
    assert_eq!(r.session_name, "orders.orders-fn");
    assert_eq!(r.tags[0], ("namespace".into(), "orders".into()));
    let shop = token(
        "kubernetes",
        json!({"sub": "system:serviceaccount:shop-eu:cart"}),
    );
    assert!(allowed(&m, &shop, "inventory-api"));
    assert!(!allowed(&m, &shop, "orders-fn-aws"));
}

#[test]
fn cross_account_chain_renders_external_id_and_inherits_session() {
    let m = shipped();
    let t = token(
        "github",
        json!({"sub": "repo:acme/platform-audit:ref:refs/heads/main", "repository_owner": "acme", "workflow": "nightly-audit", "actor": "ops-bot"}),
    );
    let Decision::Allow { target, .. } = m.decide(&t, "audit-readonly-all-accounts") else {
        panic!()
    };
    let input = RenderInput {
        token: &t,
        raw_token: "t",
        requested_scopes: None,
        actor: None,
        prior_act: &PriorAct::Absent,
    };
    let ProviderRequest::Aws(r) = render(target, &input).unwrap() else {
        panic!()
    };
    assert_eq!(r.chain.len(), 1);
    assert_eq!(
        r.chain[0].external_id.as_deref(),
        Some("stsbridge-platform-audit")
    );
    assert_eq!(r.chain[0].session_name, "platform-ops-bot");
    assert_eq!(r.chain[0].source_identity.as_deref(), Some("ops-bot"));
    assert_eq!(r.chain[0].duration, Duration::from_secs(3600));
}

const TARGET: &str =
    "version: 1\ntargets:\n  - name: t\n    jwt: { audience: a, scopes: [read, write] }\n";

#[test]
fn rules_naming_unknown_targets_or_issuers_fail_to_load() {
    let e = errors(&[(
        "a.yaml",
        &format!(
            "{TARGET}rules:\n  - {{ name: r, issuer: github, subject: x, allow: [t, nope] }}\n  - {{ name: s, issuer: okta, subject: x, allow: [t] }}\n"
        ),
    )]);
    assert!(
        e.iter()
            .any(|e| e.path == "rules[0].allow[1]" && e.message.contains("\"nope\"")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.path == "rules[1].issuer" && e.message.contains("\"okta\"")),
        "{e:?}"
    );
}

#[test]
fn a_rule_for_any_subject_must_say_so() {
    let e = errors(&[(
        "a.yaml",
        &format!("{TARGET}rules:\n  - {{ name: r, issuer: github, allow: [t] }}\n"),
    )]);
    assert!(e[0].message.contains("subject: { any: true }"), "{e:?}");
    let m = load(&[("a.yaml", &format!("{TARGET}rules:\n  - {{ name: r, issuer: github, subject: {{ any: true }}, allow: [t] }}\n"))]).unwrap();
    assert!(allowed(
        &m,
        &token("github", json!({"sub": "whoever"})),
        "t"
    ));
}

#[test]
fn durations_above_the_provider_maximum_fail_to_load() {
    let aws = |d: &str, hop: &str| {
        format!(
            "version: 1\ntargets:\n  - name: t\n    aws:\n      role_arn: arn:aws:iam::111111111111:role/r\n      duration: {d}\n      chain:\n        - {{ role_arn: \"arn:aws:iam::222222222222:role/x\", duration: {hop} }}\n"
        )
    };
    let e = errors(&[("a.yaml", &aws("13h", "1h"))]);
    assert_eq!(e[0].path, "targets[0].aws.duration");
    let e = errors(&[("a.yaml", &aws("1h", "2h"))]);
    assert_eq!(e[0].path, "targets[0].aws.chain[0].duration");
    assert!(e[0].message.contains("chained"), "{}", e[0].message);
    let e = errors(&[("a.yaml", &aws("5m", "1h"))]);
    assert_eq!(e[0].path, "targets[0].aws.duration");
    let e = errors(&[(
        "a.yaml",
        "version: 1\ntargets:\n  - { name: t, jwt: { audience: a, lifetime: 2h } }\n",
    )]);
    assert_eq!(e[0].path, "targets[0].jwt.lifetime");
}

#[test]
fn target_validation() {
    let cases = [
        (
            "version: 1\ntargets:\n  - { name: t, aws: { role_arn: \"arn:aws:s3:::bucket\" } }\n",
            "targets[0].aws.role_arn",
        ),
        (
            "version: 1\ntargets:\n  - { name: t, aws: { role_arn: \"arn:aws:iam::111111111111:role/r\", session_name: \"a b\" } }\n",
            "targets[0].aws.session_name",
        ),
        (
            "version: 1\ntargets:\n  - { name: t, aws: { role_arn: \"arn:aws:iam::111111111111:role/r\", session_name: \"{{ nope }}\" } }\n",
            "targets[0].aws.session_name",
        ),
        (
            "version: 1\ntargets:\n  - { name: t, aws: { role_arn: \"arn:aws:iam::111111111111:role/r\", session_tags: { \"aws:x\": v } } }\n",
            "targets[0].aws.session_tags.aws:x",
        ),
        (
            "version: 1\ntargets:\n  - { name: t, aws: { role_arn: \"arn:aws:iam::111111111111:role/r\", transitive_tag_keys: [k] } }\n",
            "targets[0].aws.transitive_tag_keys[0]",
        ),
        (
            "version: 1\ntargets:\n  - { name: t, assertion: passthrough, aws: { role_arn: \"arn:aws:iam::111111111111:role/r\", session_tags: { k: v } } }\n",
            "targets[0].aws",
        ),
        (
            "version: 1\ntargets:\n  - { name: t, aws: { role_arn: \"arn:aws:iam::111111111111:role/r\", session_policy_file: missing.json } }\n",
            "targets[0].aws.session_policy_file",
        ),
        (
            "version: 1\ntargets:\n  - { name: t, gcp: { audience: x } }\n",
            "targets[0].gcp.audience",
        ),
        ("version: 1\ntargets:\n  - { name: t }\n", "targets[0]"),
        (
            "version: 1\ntargets:\n  - { name: \"bad name\", jwt: { audience: a } }\n",
            "targets[0].name",
        ),
        (
            "version: 1\ntargets:\n  - { name: t, jwt: { audience: a, scopes: [\"two words\"] } }\n",
            "targets[0].jwt.scopes[0]",
        ),
        (
            "version: 1\ntargets:\n  - { name: t, jwt: { audience: a, colour: blue } }\n",
            "targets[0].jwt.colour",
        ),
        ("version: 3\n", "version"),
    ];
    for (text, path) in cases {
        let e = errors(&[("a.yaml", text)]);
        assert!(e.iter().any(|e| e.path == path), "{path}: {e:?}");
    }
}

#[test]
fn oversized_session_policies_fail_to_load() {
    let big = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": vec!["s3:GetObject"; 200], "Resource": "*"}]});
    let e = errors(&[
        ("p.json", &big.to_string()),
        (
            "a.yaml",
            "version: 1\ntargets:\n  - { name: t, aws: { role_arn: \"arn:aws:iam::111111111111:role/r\", session_policy_file: p.json } }\n",
        ),
    ]);
    assert!(e[0].message.contains("2048"), "{e:?}");
}

#[test]
fn duplicate_names_across_files_fail_to_load() {
    let e = errors(&[("a.yaml", TARGET), ("b.yaml", TARGET)]);
    assert!(e[0].message.contains("already a target"), "{e:?}");
    let rule = format!(
        "{TARGET}rules:\n  - {{ name: r, issuer: github, subject: x, allow: [t] }}\n  - {{ name: r, issuer: github, subject: y, allow: [t] }}\n"
    );
    let e = errors(&[("a.yaml", &rule)]);
    assert!(e.iter().any(|e| e.path == "rules[1].name"), "{e:?}");
}

#[test]
fn templates_are_sanitized_to_aws_limits() {
    let m = load(&[(
        "a.yaml",
        "version: 1\ntargets:\n  - name: t\n    aws:\n      role_arn: arn:aws:iam::111111111111:role/r\n      session_tags: { who: \"{{ claims.email }}\" }\nrules:\n  - { name: r, issuer: github, subject: { any: true }, allow: [t] }\n",
    )])
    .unwrap();
    let long = format!("repo:{}/x y;z", "a".repeat(100));
    let t = token("github", json!({"sub": long, "email": "a;b@example.com"}));
    let Decision::Allow { target, .. } = m.decide(&t, "t") else {
        panic!()
    };
    let ProviderRequest::Aws(r) = render(
        target,
        &RenderInput {
            token: &t,
            raw_token: "x",
            requested_scopes: None,
            actor: None,
            prior_act: &PriorAct::Absent,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(r.session_name.len(), 64);
    assert!(r.session_name.starts_with("repo-aaaa"));
    assert_eq!(r.tags[0].1, "a_b@example.com");
    let missing = token("github", json!({"sub": "x"}));
    let err = render(
        target,
        &RenderInput {
            token: &missing,
            raw_token: "x",
            requested_scopes: None,
            actor: None,
            prior_act: &PriorAct::Absent,
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        RenderError::Template(TemplateError::MissingClaim("claims.email".into()))
    );
}

#[test]
fn requested_scopes_narrow_and_never_widen() {
    let m = load(&[(
        "a.yaml",
        &format!("{TARGET}rules:\n  - {{ name: r, issuer: github, subject: x, allow: [t] }}\n"),
    )])
    .unwrap();
    let t = token("github", json!({"sub": "x"}));
    let target = m.target("t").unwrap();
    let read = vec!["read".to_owned()];
    let ProviderRequest::Jwt(r) = render(
        target,
        &RenderInput {
            token: &t,
            raw_token: "x",
            requested_scopes: Some(&read),
            actor: None,
            prior_act: &PriorAct::Absent,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(r.scopes, read);
    let admin = vec!["read".to_owned(), "admin".to_owned()];
    assert_eq!(
        render(
            target,
            &RenderInput {
                token: &t,
                raw_token: "x",
                requested_scopes: Some(&admin),
                actor: None,
                prior_act: &PriorAct::Absent,
            }
        )
        .unwrap_err(),
        RenderError::ScopeNotAvailable("admin".into())
    );
}

#[test]
fn delegation_nests_act_and_is_limited() {
    let m = load(&[("a.yaml", TARGET)]).unwrap();
    let target = m.target("t").unwrap();
    let actor = token("github", json!({"sub": "svc-a"}));
    let subject = token("github", json!({"sub": "alice", "act": {"sub": "svc-b"}}));
    // The subject's own chain, as an issuer trusted with accept_act brings it.
    let kept = delegation::prior_chain(&subject.claims, true).unwrap();
    let ProviderRequest::Jwt(r) = render(
        target,
        &RenderInput {
            token: &subject,
            raw_token: "x",
            requested_scopes: None,
            actor: Some(&actor),
            prior_act: &kept,
        },
    )
    .unwrap() else {
        panic!()
    };
    let act: serde_json::Value = serde_json::from_str(r.act.as_deref().unwrap()).unwrap();
    assert_eq!(
        act,
        json!({"sub": "svc-a", "iss": "https://github", "act": {"sub": "svc-b"}})
    );
    let deep = token(
        "github",
        json!({"sub": "alice", "act": {"sub": "1", "act": {"sub": "2", "act": {"sub": "3", "act": {"sub": "4"}}}}}),
    );
    let deep_chain = delegation::prior_chain(&deep.claims, true).unwrap();
    assert_eq!(
        render(
            target,
            &RenderInput {
                token: &deep,
                raw_token: "x",
                requested_scopes: None,
                actor: Some(&actor),
                prior_act: &deep_chain,
            }
        )
        .unwrap_err(),
        RenderError::DelegationTooDeep
    );
}

#[test]
fn explain_shows_each_condition() {
    let m = shipped();
    let t = token(
        "github",
        json!({"sub": "repo:acme/payments:environment:prod", "repository_owner": "acme", "ref": "refs/heads/dev"}),
    );
    let rules = m.explain(&t, "payments-prod-deploy");
    let r = rules
        .iter()
        .find(|r| r.rule == "payments-main-deploys-prod")
        .unwrap();
    assert!(r.subject.pass);
    assert!(!r.matched);
    let by_claim: HashMap<&str, &ConditionExplanation> =
        r.conditions.iter().map(|c| (c.claim.as_str(), c)).collect();
    assert!(by_claim["repository_owner"].check.pass);
    assert!(!by_claim["ref"].check.pass);
    assert_eq!(
        by_claim["ref"].check.actual.as_deref(),
        Some("refs/heads/dev")
    );
    assert_eq!(by_claim["job_workflow_ref"].check.actual, None);
}

#[test]
fn ten_thousand_partners_decide_by_index() {
    let mut text =
        String::from("version: 1\ntargets:\n  - { name: t, jwt: { audience: a } }\nrules:\n");
    for i in 0..10_000 {
        text.push_str(&format!("  - {{ name: r{i}, issuer: partner-globex, subject: \"svc-{i}\", claims: {{ tenant: t{i} }}, allow: [t] }}\n"));
    }
    for i in 0..200 {
        text.push_str(&format!("  - {{ name: g{i}, issuer: partner-globex, subject: {{ glob: \"team{i}-*\" }}, allow: [t] }}\n"));
    }
    let m = load(&[("many.yaml", &text)]).unwrap();
    assert_eq!(m.rule_count(), 10_200);
    let hit = token(
        "partner-globex",
        json!({"sub": "svc-9999", "tenant": "t9999"}),
    );
    let miss = token("partner-globex", json!({"sub": "svc-9999", "tenant": "t1"}));
    let glob = token("partner-globex", json!({"sub": "team150-builder"}));
    assert!(allowed(&m, &hit, "t"));
    assert!(!allowed(&m, &miss, "t"));
    assert!(allowed(&m, &glob, "t"));
    assert_eq!(
        m.candidates("partner-globex", "svc-9999").len(),
        1,
        "exact subjects are looked up, not scanned"
    );
    // Not a timing assertion: just print what it cost (benchmarks live in the bench suite).
    let start = Instant::now();
    for _ in 0..1000 {
        std::hint::black_box(m.decide(&hit, "t"));
    }
    eprintln!("10,200 rules: {:?} per decision", start.elapsed() / 1000);
}

const GCP_AUDIENCE: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/stsbridge/providers/stsbridge";

#[test]
fn gcp_and_azure_targets_load_and_render() {
    let text = format!(
        r#"version: 1
targets:
  - name: reader
    gcp:
      audience: "{GCP_AUDIENCE}"
      service_account: reader@analytics.iam.gserviceaccount.com
      scopes: [https://www.googleapis.com/auth/cloud-platform]
      lifetime: 30m
  - name: federated
    gcp: {{ audience: "{GCP_AUDIENCE}" }}
  - name: blob
    azure: {{ tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47, client_id: 3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c, scope: "https://storage.azure.com/.default" }}
rules:
  - {{ name: r, issuer: github, subject: x, allow: ["*"] }}
"#
    );
    let m = load(&[("a.yaml", &text)]).unwrap();
    let t = token("github", json!({"sub": "x"}));
    let input = RenderInput {
        token: &t,
        raw_token: "x",
        requested_scopes: None,
        actor: None,
        prior_act: &PriorAct::Absent,
    };
    let ProviderRequest::Gcp(g) = render(m.target("reader").unwrap(), &input).unwrap() else {
        panic!()
    };
    assert_eq!(g.audience, GCP_AUDIENCE);
    assert_eq!(g.assertion_audience, format!("https:{GCP_AUDIENCE}"));
    assert_eq!(
        g.service_account.as_deref(),
        Some("reader@analytics.iam.gserviceaccount.com")
    );
    assert_eq!(g.lifetime, Duration::from_secs(1800));
    assert_eq!(
        g.assertion,
        AssertionSource::Mint {
            subject: "target:reader".into()
        }
    );
    let ProviderRequest::Gcp(f) = render(m.target("federated").unwrap(), &input).unwrap() else {
        panic!()
    };
    assert_eq!(f.service_account, None);
    assert_eq!(
        f.scopes,
        vec!["https://www.googleapis.com/auth/cloud-platform"]
    );
    let ProviderRequest::Azure(a) = render(m.target("blob").unwrap(), &input).unwrap() else {
        panic!()
    };
    assert_eq!(a.scope, "https://storage.azure.com/.default");
    let TargetKind::Azure(blob) = &m.target("blob").unwrap().kind else {
        panic!()
    };
    assert_eq!(blob.resource(), "https://storage.azure.com");
}

#[test]
fn gcp_and_azure_targets_are_validated_at_load() {
    let gcp =
        |fields: &str| format!("version: 1\ntargets:\n  - name: t\n    gcp: {{ {fields} }}\n");
    let azure =
        |fields: &str| format!("version: 1\ntargets:\n  - name: t\n    azure: {{ {fields} }}\n");
    let sa = "service_account: a-reader@p.iam.gserviceaccount.com";
    let good_azure = "tenant_id: contoso.onmicrosoft.com, client_id: 3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c, scope: \"api://orders/.default\"";
    assert!(
        load(&[(
            "a.yaml",
            &gcp(&format!(
                "audience: \"{GCP_AUDIENCE}\", {sa}, lifetime: 12h, allow_lifetime_extension: true"
            ))
        )])
        .is_ok()
    );
    assert!(load(&[("a.yaml", &azure(good_azure))]).is_ok());
    let cases = [
        (
            gcp("audience: \"projects/1/locations/global/workloadIdentityPools/p/providers/v\""),
            "targets[0].gcp.audience",
        ),
        (
            gcp(&format!(
                "audience: \"{GCP_AUDIENCE}\", service_account: reader@gmail.com"
            )),
            "targets[0].gcp.service_account",
        ),
        (
            gcp(&format!("audience: \"{GCP_AUDIENCE}\", {sa}, lifetime: 2h")),
            "targets[0].gcp.lifetime",
        ),
        (
            gcp(&format!("audience: \"{GCP_AUDIENCE}\", lifetime: 30m")),
            "targets[0].gcp.lifetime",
        ),
        (
            gcp(&format!(
                "audience: \"{GCP_AUDIENCE}\", delegates: [a-other@p.iam.gserviceaccount.com]"
            )),
            "targets[0].gcp.delegates",
        ),
        (
            azure(
                "tenant_id: common, client_id: 3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c, scope: \"api://x/.default\"",
            ),
            "targets[0].azure.tenant_id",
        ),
        (
            azure(
                "tenant_id: contoso.onmicrosoft.com, client_id: my-app, scope: \"api://x/.default\"",
            ),
            "targets[0].azure.client_id",
        ),
        (
            azure(
                "tenant_id: contoso.onmicrosoft.com, client_id: 3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c, scope: \"https://storage.azure.com/user_impersonation\"",
            ),
            "targets[0].azure.scope",
        ),
    ];
    for (text, path) in cases {
        let e = errors(&[("a.yaml", &text)]);
        assert!(e.iter().any(|e| e.path == path), "{path}: {e:?}");
    }
}

#[test]
fn rules_can_require_a_client_certificate_name() {
    let text = format!(
        "{TARGET}rules:\n  - {{ name: r, issuer: github, subject: x, client_certificate: {{ glob: \"*.deploy.acme.internal\" }}, allow: [t] }}\n"
    );
    let m = load(&[("a.yaml", &text)]).unwrap();
    let t = token("github", json!({"sub": "x"}));
    assert!(
        matches!(m.decide(&t, "t"), Decision::Deny { rule: None }),
        "no certificate, no match"
    );
    assert!(matches!(
        m.decide_for(&t, &["ci.deploy.acme.internal".into()], "t"),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        m.decide_for(&t, &["ci.other.internal".into()], "t"),
        Decision::Deny { .. }
    ));
    let explained = m.explain_for(&t, &["ci.other.internal".into()], "t");
    let cert = explained[0]
        .conditions
        .iter()
        .find(|c| c.claim == "client certificate")
        .unwrap();
    assert!(!cert.check.pass);
    let bad = format!(
        "{TARGET}rules:\n  - {{ name: r, issuer: github, subject: x, client_certificate: {{ not_one_of: [a] }}, allow: [t] }}\n"
    );
    assert!(
        errors(&[("a.yaml", &bad)])
            .iter()
            .any(|e| e.path == "rules[0].client_certificate")
    );
}

#[test]
fn glob_shortcuts_match_exactly_what_globset_matches() {
    let patterns = [
        "svc-*",
        "*@example.com",
        "*",
        "repo:acme/*",
        "a*b",
        "svc-?",
        "x[ab]*",
        "*.{a,b}",
        "**",
        "pre**",
        "é*",
        "\\**",
    ];
    let inputs = [
        "",
        "svc-",
        "svc-1",
        "svc-1/2",
        "SVC-1",
        "x@example.com",
        "@example.com",
        "repo:acme/app",
        "repo:acme",
        "ab",
        "axxb",
        "xa",
        "xb1",
        "f.a",
        "é",
        "éa",
        "*x",
        "pre/x",
    ];
    for p in patterns {
        let fast = condition::GlobTest::new(p).unwrap();
        let reference = globset::Glob::new(p).unwrap().compile_matcher();
        for s in inputs {
            assert_eq!(fast.is_match(s), reference.is_match(s), "{p:?} on {s:?}");
        }
    }
    assert!(matches!(
        condition::GlobTest::new("svc-*").unwrap(),
        condition::GlobTest::Prefix(_)
    ));
    assert!(condition::GlobTest::new("a[").is_err());
}

#[test]
fn audit_mode_rules_decide_nothing_and_are_reported_as_shadow() {
    let m = load(&[(
        "staged.yaml",
        r#"version: 1
targets:
  - { name: t, jwt: { audience: a } }
  - { name: u, jwt: { audience: b } }
rules:
  - { name: live, issuer: partner-globex, subject: "svc-1", allow: [t] }
  - { name: staged-allow, issuer: partner-globex, subject: { glob: "svc-*" }, allow: [u], mode: audit }
  - { name: staged-deny, issuer: partner-globex, subject: "svc-1", deny: ["*"], mode: audit }
"#,
    )])
    .unwrap();
    let svc1 = token("partner-globex", json!({"sub": "svc-1"}));
    // The audit deny rule does not refuse, the audit allow rule does not grant.
    assert!(allowed(&m, &svc1, "t"));
    assert!(!allowed(&m, &svc1, "u"));
    let names = |target: &str| -> Vec<String> {
        m.shadow_for(&svc1, &[], target)
            .iter()
            .map(|r| r.name.clone())
            .collect()
    };
    assert_eq!(names("t"), ["staged-deny"]);
    assert_eq!(names("u"), ["staged-allow", "staged-deny"]);
    // Issuers without audit rules pay nothing.
    let other = token("github", json!({"sub": "svc-1"}));
    assert!(m.shadow_for(&other, &[], "t").is_empty());
    // A misspelt mode is an error naming the field.
    let e = errors(&[(
        "bad.yaml",
        "version: 1\ntargets: [{ name: t, jwt: { audience: a } }]\nrules:\n  - { name: r, issuer: github, subject: s, allow: [t], mode: shadow }\n",
    )]);
    assert!(
        e.iter().any(|e| e
            .to_string()
            .contains("rules[0].mode: rule \"r\": \"shadow\" is not a mode")),
        "{e:?}"
    );
}

#[test]
fn denial_failures_name_the_tests_not_the_token_values() {
    let m = shipped();
    let t = token(
        "partner-globex",
        json!({"sub": "svc-billing", "tenant": "initech", "roles": ["reader"]}),
    );
    let rules = m.explain(&t, "partner-orders-api");
    let integration = rules
        .iter()
        .find(|r| r.rule == "globex-integration-clients")
        .unwrap();
    assert_eq!(
        integration.failures(),
        [
            "tenant == \"globex\"",
            "roles contains \"orders-integration\""
        ]
    );
    assert!(
        integration
            .report(&t.subject)
            .contains("(token: \"initech\")")
    );
    assert!(!integration.failures().join(" ").contains("initech"));
}

#[test]
fn partner_files_bring_their_trust_entries_which_must_be_unique() {
    let partner = |name: &str, issuer: &str| {
        format!(
            "version: 1\ntrust:\n  - {{ name: {name}, issuer: \"{issuer}\", audiences: [x], jwks: {{ discovery: true }}, rate_limit: 5/s, max_concurrent: 3 }}\ntargets: [{{ name: {name}-t, jwt: {{ audience: a }} }}]\nrules:\n  - {{ name: {name}-r, issuer: {name}, subject: {{ any: true }}, allow: [{name}-t] }}\n"
        )
    };
    let a = partner("partner-a", "https://a.example");
    let b = partner("partner-b", "https://b.example");
    let dir = dir_with(&[("partner-a.yaml", &a), ("partner-b.yaml", &b)]);
    let config = dir.path().join("stsbridge.yaml");
    let (m, trust) = Mappings::load_with_trust(dir.path(), &[], &config).unwrap();
    assert_eq!(trust.len(), 2);
    assert!(trust.iter().all(|t| t.lazy_jwks));
    assert_eq!(trust[0].max_concurrent, Some(3));
    assert!(allowed(
        &m,
        &token("partner-b", json!({"sub": "x"})),
        "partner-b-t"
    ));

    // The same issuer in two partner files, or a partner repeating a config entry's name.
    let dup = partner("partner-c", "https://a.example");
    let dir = dir_with(&[("partner-a.yaml", &a), ("partner-c.yaml", &dup)]);
    let e = Mappings::load_with_trust(dir.path(), &[], &config).unwrap_err();
    assert!(
        e.to_string()
            .contains("\"https://a.example\" is also trusted in"),
        "{e}"
    );
    let dir = dir_with(&[("partner-a.yaml", &a)]);
    let mut config_entry = crate::testutil::trust();
    config_entry.name = "partner-a".into();
    let e = Mappings::load_with_trust(dir.path(), &[config_entry], &config).unwrap_err();
    assert!(
        e.to_string()
            .contains("\"partner-a\" is also a trust entry in"),
        "{e}"
    );
}

#[test]
fn referenced_issuers_include_actors_and_leave_out_the_built_in_one() {
    let dir = dir_with(&[(
        "a.yaml",
        "version: 1\ntargets:\n  - { name: t, jwt: { audience: a } }\nrules:\n  - { name: r, issuer: stsbridge, subject: { any: true }, allow: [t], actors: [{ issuer: gateway, subject: { any: true } }] }\n  - { name: s, issuer: github, subject: x, allow: [t] }\n",
    )]);
    let names: Vec<String> = referenced_issuers(dir.path())
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(names, ["gateway", "github"]);
}

#[test]
fn built_in_targets_are_granted_only_by_name_and_refused_by_any_deny() {
    let m = load(&[(
        "a.yaml",
        r#"
version: 1
targets:
  - name: api
    jwt: { audience: api }
rules:
  - name: everything
    issuer: dev
    subject: { glob: "dev:*" }
    allow: ["*"]
  - name: operator
    issuer: dev
    subject: "dev:operator"
    allow: [stsbridge:revoke]
  - name: blocked
    issuer: dev
    subject: "dev:mallory"
    deny: ["*"]
  - name: mallory-operator
    issuer: dev
    subject: "dev:mallory"
    allow: [stsbridge:revoke, stsbridge:introspect]
"#,
    )])
    .unwrap();
    let alice = token("dev", json!({ "sub": "dev:alice" }));
    let operator = token("dev", json!({ "sub": "dev:operator" }));
    let mallory = token("dev", json!({ "sub": "dev:mallory" }));
    // "*" covers every mapping target, never a built-in one.
    assert!(allowed(&m, &alice, "api"));
    assert!(matches!(m.permits(&alice, &[], REVOKE_TARGET), Err(None)));
    assert!(matches!(
        m.permits(&operator, &[], REVOKE_TARGET),
        Ok(r) if r.name == "operator"
    ));
    assert!(m.permits(&operator, &[], INTROSPECT_TARGET).is_err());
    // A deny rule with "*" wins over a rule naming the built-in target.
    assert!(matches!(
        m.permits(&mallory, &[], REVOKE_TARGET),
        Err(Some(r)) if r.name == "blocked"
    ));
    // Other names under the reserved prefix are refused at load.
    let errs = errors(&[(
        "b.yaml",
        "version: 1\ntargets: []\nrules:\n  - name: r\n    issuer: dev\n    subject: x\n    allow: [stsbridge:admin]\n",
    )]);
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("not a built-in target")),
        "{errs:?}"
    );
}

#[test]
fn every_broken_rule_and_target_of_a_file_is_reported_with_its_index_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        r#"version: 1
targets:
  - { name: a, jwt: { audience: a } }
  - { name: b, jwt: { audiense: b } }
rules:
  - { name: r0, issuer: ci, subject: s, allow: [a], colour: red }
  - { name: r1, issuer: ci, subject: s, allow: [a] }
  - { name: r2, issuer: ci, subjekt: s, allow: [a] }
"#,
    )
    .unwrap();
    let names: HashSet<String> = [crate::testutil::trust().name].into_iter().collect();
    let Err(errors) = Mappings::load(dir.path(), &names) else {
        panic!("the files have errors")
    };
    let errors = errors.0;
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "targets[1].jwt.audiense",
        "rules[0].colour",
        "rules[2].subjekt",
    ] {
        assert!(paths.contains(&want), "{want} missing from {errors:?}");
    }
}

#[test]
fn a_broken_target_is_reported_once_and_rule_errors_name_their_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "version: 1\ntargets:\n  - { name: broken, jwt: { audiense: x } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "version: 1\nrules:\n  - { name: uses-broken, issuer: idp, subject: s, allow: [broken] }\n  - { name: also-broken, issuer: idp, subject: s, allow: [broken] }\n  - { name: typo, issuer: idp, subject: s, allow: [nowhere] }\n",
    )
    .unwrap();
    let names: HashSet<String> = [crate::testutil::trust().name].into_iter().collect();
    let Err(errors) = Mappings::load(dir.path(), &names) else {
        panic!("the files have errors")
    };
    let errors = errors.0;
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(
        text[0].contains("a.yaml: targets[0].jwt.audiense"),
        "{text:#?}"
    );
    assert_eq!(
        text.iter()
            .filter(|t| t.contains("is not a target"))
            .count(),
        1,
        "the broken target once, not once more per rule naming it: {text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("rules[2].allow[0]")
            && t.contains("rule \"typo\": \"nowhere\" is not a target")),
        "{text:#?}"
    );
}
