//! Signing-key rotation under traffic: `stsbridge keys rotate` stages a key that running services
//! publish before they sign with it, and no exchange fails or yields a token its own JWKS cannot
//! verify at any moment of the rotation.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{BIN, Setup, Stack, verify_with_bridge_jwks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_traffic_publishes_before_use_and_fails_nothing() {
    let stack = Stack::start(Setup {
        keys: Some("{ dir: keys, algorithm: ES256, publish_before_use: 5s }"),
        ..Setup::default()
    })
    .await;
    let jwks_kids = |doc: &Value| -> BTreeSet<String> {
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let fetch_jwks = || async {
        stack
            .http
            .get(stack.bridge.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let old = jwks_kids(&fetch_jwks().await);
    assert_eq!(old.len(), 1);

    let mut seen_in_jwks: BTreeSet<String> = old.clone();
    let mut first_use_of_new: Option<String> = None;
    let mut rotated = false;
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(25) {
        if !rotated && started.elapsed() > Duration::from_secs(1) {
            let out = Command::new(BIN)
                .args(["keys", "rotate", "--config", "stsbridge.yaml"])
                .current_dir(stack.dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            rotated = true;
        }
        // Four concurrent exchanges per round, each for a distinct subject: fresh mints, not cached
        // tokens.
        let subjects: Vec<String> = (0..4)
            .map(|i| {
                stack
                    .idp
                    .token(&format!("svc:caller-{n}-{i}"), serde_json::json!({}))
            })
            .collect();
        n += 1;
        let answers =
            futures::future::join_all(subjects.iter().map(|s| stack.exchange(s, "api", &[]))).await;
        let published_now = jwks_kids(&fetch_jwks().await);
        for (status, body) in answers {
            assert_eq!(
                status, 200,
                "an exchange failed during the rotation: {body}"
            );
            let token = body["access_token"].as_str().unwrap();
            let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
            assert!(
                seen_in_jwks.contains(&kid) || published_now.contains(&kid),
                "a token signed by unpublished {kid}"
            );
            if !old.contains(&kid) && first_use_of_new.is_none() {
                assert!(
                    seen_in_jwks.contains(&kid),
                    "the new key {kid} signed before any JWKS published it"
                );
                first_use_of_new = Some(kid.clone());
            }
            verify_with_bridge_jwks(&stack, token, "billing-api").await;
        }
        seen_in_jwks.extend(jwks_kids(&fetch_jwks().await));
        if first_use_of_new.is_some() && n % 3 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new = first_use_of_new.expect("the staged key started signing within 25 s");
    let now_published = jwks_kids(&fetch_jwks().await);
    assert!(now_published.contains(&new));
    assert!(
        old.is_subset(&now_published),
        "the replaced key stays published while its tokens live"
    );
    assert!(
        stack
            .bridge
            .stderr()
            .contains("signing with a new key from now on")
    );
}
