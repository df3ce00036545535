//! Hostile mapping files: parse, compile (conditions, templates, indexes), and, when they load,
//! decide, explain and render for a token with hostile-looking claims.
#![no_main]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use stsbridge::mapping::delegation::PriorAct;
use stsbridge::mapping::{Decision, Mappings, RenderInput, render};
use stsbridge::token::ValidatedToken;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let trust: HashSet<String> = ["ci", "partner"].iter().map(|s| s.to_string()).collect();
    let sources = vec![(PathBuf::from("/nonexistent/mappings/fuzz.yaml"), text.to_owned())];
    let Ok(mappings) = Mappings::compile(Path::new("/nonexistent/mappings"), &sources, &trust) else { return };
    let claims = serde_json::json!({
        "sub": "repo:acme/app:ref:refs/heads/main", "repository_owner": "acme", "run_id": 42,
        "groups": ["a", "b"], "kubernetes.io": { "namespace": "x" }, "weird": "ü\u{0}\u{202e}",
    });
    let token = ValidatedToken {
        trust: "ci".into(),
        issuer: "https://idp.example.com".into(),
        subject: "repo:acme/app:ref:refs/heads/main".into(),
        claims: claims.as_object().unwrap().clone(),
        jti: None,
        expires_at: 0,
    };
    for name in mappings.target_names() {
        let _ = mappings.explain(&token, name);
        if let Decision::Allow { target, .. } = mappings.decide(&token, name) {
            let input = RenderInput { token: &token, raw_token: "x.y.z", requested_scopes: None, actor: None, prior_act: &PriorAct::Absent };
            let _ = render(target, &input);
        }
    }
});
