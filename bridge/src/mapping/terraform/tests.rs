use std::collections::HashSet;

use serde_json::{Value, json};

use super::*;

const ISSUER: &str = "https://sts.example.com";

fn load(text: &str) -> Mappings {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yaml"), text).unwrap();
    let names: HashSet<String> = ["ci".to_owned()].into();
    Mappings::load(dir.path(), &names).unwrap_or_else(|e| panic!("{e}"))
}

fn json_of(text: &str) -> Value {
    serde_json::to_value(vars(ISSUER, &load(text)).unwrap()).unwrap()
}

fn error_of(text: &str) -> String {
    let errors = vars(ISSUER, &load(text)).unwrap_err();
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_mappings_give_each_cloud_target_its_exact_sub_and_aud() {
    let mappings = crate::mapping::tests::shipped();
    let v = serde_json::to_value(vars(ISSUER, &mappings).unwrap()).unwrap();
    // Every AWS, GCP and Azure target, and no JWT target.
    let mut names: Vec<&str> = v["targets"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "audit-readonly-all-accounts",
            "orders-fn-aws",
            "orders-fn-blob",
            "orders-fn-gcs",
            "partner-dropbox",
            "payments-ledger-aws",
            "payments-prod-deploy",
            "payments-staging-deploy",
            "sandbox-aws"
        ]
    );
    for (name, t) in v["targets"].as_object().unwrap() {
        assert_eq!(t["sub"], format!("target:{name}"), "{name}");
    }
    assert_eq!(
        v["targets"]["orders-fn-blob"]["aud"],
        "api://AzureADTokenExchange"
    );
    assert_eq!(
        v["targets"]["orders-fn-gcs"]["aud"],
        "https://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/stsbridge/providers/stsbridge"
    );
    assert_eq!(v["targets"]["sandbox-aws"]["aud"], "sts.amazonaws.com");
}

#[test]
fn aws_roles_carry_the_trust_of_first_hops_and_chains() {
    let v = json_of(
        r#"
version: 1
targets:
  - name: deploy
    aws:
      role_arn: arn:aws:iam::111111111111:role/ci/deploy
      duration: 2h
      source_identity: "{{ claims.actor }}"
      session_tags: { repo: "{{ claims.repository }}" }
  - name: read
    aws: { role_arn: "arn:aws:iam::111111111111:role/ci/deploy" }
  - name: cross
    aws:
      role_arn: arn:aws:iam::111111111111:role/hub
      transitive_tag_keys: [team]
      session_tags: { team: platform }
      chain:
        - role_arn: arn:aws:iam::222222222222:role/audit
          external_id: stsbridge-{{ target }}
        - role_arn: arn:aws:iam::333333333333:role/leaf
          external_id: "{{ claims.tenant }}-x"
rules:
  - { name: r, issuer: ci, subject: { any: true }, allow: ["*"] }
"#,
    );
    let roles = &v["aws_roles"];
    assert_eq!(
        roles["arn:aws:iam::111111111111:role/ci/deploy"],
        json!({
            "partition": "aws",
            "account_id": "111111111111",
            "name": "deploy",
            "path": "/ci/",
            "targets": ["deploy", "read"],
            "web_identity": {
                "audience": "sts.amazonaws.com",
                "subjects": ["target:deploy", "target:read"],
                "tag_session": true,
                "set_source_identity": true
            },
            "max_session_duration": 7200
        })
    );
    assert_eq!(
        roles["arn:aws:iam::111111111111:role/hub"]["assumes"],
        json!([{ "role_arn": "arn:aws:iam::222222222222:role/audit", "tag_session": true, "set_source_identity": false }])
    );
    assert_eq!(
        roles["arn:aws:iam::222222222222:role/audit"]["trusted_roles"],
        json!([{
            "role_arn": "arn:aws:iam::111111111111:role/hub",
            "external_id": "stsbridge-cross",
            "tag_session": true,
            "set_source_identity": false
        }])
    );
    assert!(roles["arn:aws:iam::222222222222:role/audit"]["web_identity"].is_null());
    // An external id read from the caller's token is a pattern, its literal part kept.
    assert_eq!(
        roles["arn:aws:iam::333333333333:role/leaf"]["trusted_roles"][0]["external_id_pattern"],
        "*-x"
    );
    assert_eq!(
        roles["arn:aws:iam::333333333333:role/leaf"]["trusted_roles"][0]["tag_session"], true,
        "transitive tags travel the whole chain"
    );
}

#[test]
fn a_per_caller_subject_is_a_pattern_for_aws_and_an_error_for_gcp_and_azure() {
    let aws = json_of(
        r#"
version: 1
targets:
  - name: t
    assertion_subject: "team:{{ claims.team }}:{{ target }}"
    aws: { role_arn: "arn:aws:iam::111111111111:role/r" }
rules:
  - { name: r, issuer: ci, subject: { any: true }, allow: ["*"] }
"#,
    );
    assert_eq!(aws["targets"]["t"]["sub_pattern"], "team:*:t");
    assert!(aws["targets"]["t"].get("sub").is_none());
    assert_eq!(
        aws["aws_roles"]["arn:aws:iam::111111111111:role/r"]["web_identity"]["subject_patterns"],
        json!(["team:*:t"])
    );
    let gcp = error_of(
        r#"
version: 1
targets:
  - name: g
    assertion_subject: "{{ subject }}"
    gcp: { audience: //iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/prov }
rules:
  - { name: r, issuer: ci, subject: { any: true }, allow: ["*"] }
"#,
    );
    assert!(
        gcp.contains("target g:") && gcp.contains("one exact subject"),
        "{gcp}"
    );
    let azure = error_of(
        r#"
version: 1
targets:
  - name: a
    assertion_subject: "{{ claims.x }}"
    azure: { tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47, client_id: 3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c, scope: https://storage.azure.com/.default }
rules:
  - { name: r, issuer: ci, subject: { any: true }, allow: ["*"] }
"#,
    );
    assert!(
        azure.contains("target a:") && azure.contains("Azure"),
        "{azure}"
    );
}

#[test]
fn gcp_providers_and_bindings_name_the_exact_principal() {
    let v = json_of(
        r#"
version: 1
targets:
  - name: reader
    gcp:
      audience: //iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov
      service_account: reader@proj-1.iam.gserviceaccount.com
      delegates: [middle@proj-1.iam.gserviceaccount.com]
  - name: federated
    assertion_subject: "fixed:{{ target }}"
    gcp:
      audience: //iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov
      assertion_audience: custom-aud
rules:
  - { name: r, issuer: ci, subject: { any: true }, allow: ["*"] }
"#,
    );
    assert_eq!(
        v["gcp_providers"]["projects/123/locations/global/workloadIdentityPools/pool/providers/prov"],
        json!({
            "project_number": "123",
            "pool_id": "pool",
            "provider_id": "prov",
            "allowed_audiences": [
                "custom-aud",
                "https://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov"
            ],
            "subjects": ["fixed:federated", "target:reader"],
            "targets": ["federated", "reader"]
        })
    );
    assert_eq!(
        v["gcp_bindings"]["reader"],
        json!({
            "provider": "projects/123/locations/global/workloadIdentityPools/pool/providers/prov",
            "subject": "target:reader",
            "principal": "principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/subject/target:reader",
            "service_account": "reader@proj-1.iam.gserviceaccount.com",
            "delegates": ["middle@proj-1.iam.gserviceaccount.com"]
        })
    );
    assert_eq!(v["targets"]["federated"]["aud"], "custom-aud");
    assert_eq!(
        v["targets"]["federated"]["identity"],
        "principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/subject/fixed:federated"
    );
}

#[test]
fn azure_credentials_are_one_per_identity_and_subject_and_at_most_twenty() {
    let target = |name: &str, client: &str, subject: &str| {
        format!(
            "  - name: {name}\n    assertion_subject: \"{subject}\"\n    azure: {{ tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47, client_id: {client}, scope: https://storage.azure.com/.default }}\n"
        )
    };
    let rules = "rules:\n  - { name: r, issuer: ci, subject: { any: true }, allow: [\"*\"] }\n";
    let client = "3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c";
    let text = format!(
        "version: 1\ntargets:\n{}{}{}{rules}",
        target("blob.writer", client, "shared"),
        target("blob-reader", client, "shared"),
        target("mgmt", client, "target:{{ target }}"),
    );
    let v = json_of(&text);
    let creds = v["azure_credentials"].as_object().unwrap();
    assert_eq!(creds.len(), 2, "{creds:?}");
    assert_eq!(
        v["azure_credentials"]["stsbridge-blob-reader"],
        json!({
            "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "client_id": client,
            "subject": "shared",
            "audience": "api://AzureADTokenExchange",
            "targets": ["blob-reader", "blob.writer"]
        })
    );
    assert_eq!(
        v["azure_credentials"]["stsbridge-mgmt"]["subject"],
        "target:mgmt"
    );

    let many: String = (0..21)
        .map(|i| target(&format!("t{i}"), client, "target:{{ target }}"))
        .collect();
    let e = error_of(&format!("version: 1\ntargets:\n{many}{rules}"));
    assert!(
        e.contains("21 federated credentials") && e.contains("at most 20"),
        "{e}"
    );
}

#[test]
fn jwt_and_passthrough_targets_need_no_terraform() {
    let mappings = load(
        r#"
version: 1
targets:
  - name: api
    jwt: { audience: api }
  - name: own-token
    assertion: passthrough
    aws: { role_arn: "arn:aws:iam::111111111111:role/r" }
rules:
  - { name: r, issuer: ci, subject: { any: true }, allow: ["*"] }
"#,
    );
    let v = vars(ISSUER, &mappings).unwrap();
    assert!(v.targets.is_empty() && v.aws_roles.is_empty());
    assert_eq!(v.notes.len(), 1);
    assert!(v.notes[0].contains("own-token") && v.notes[0].contains("passthrough"));
}
