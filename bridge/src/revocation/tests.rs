use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::*;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn known_check(new: Value, now: SystemTime) -> Result<Revocation, Invalid> {
    let trust = |n: &str| ["ci", "stsbridge"].contains(&n);
    let target = |n: &str| n == "deploy";
    let known = Known {
        trust: &trust,
        target: &target,
        max_for: Duration::from_secs(7 * 24 * 3600),
    };
    let new: NewRevocation = serde_json::from_value(new).expect("shape");
    new.check(&known, "rev_1".into(), "ops:alice".into(), now)
}

fn token(trust: &str, sub: &str, jti: Option<&str>) -> ValidatedToken {
    ValidatedToken {
        trust: trust.into(),
        issuer: format!("https://{trust}.example"),
        subject: sub.into(),
        claims: Map::new(),
        jti: jti.map(str::to_owned),
        expires_at: 0,
    }
}

fn revocation(kind: Kind, issuer: Option<&str>, value: &str, expires: u64) -> Revocation {
    Revocation {
        id: format!("rev_{}_{value}", kind.as_str()),
        kind,
        issuer: issuer.map(str::to_owned),
        value: value.into(),
        created_ms: 1_000_000,
        expires_ms: expires * 1000,
        reason: "test".into(),
        by: "ops:alice".into(),
    }
}

#[test]
fn a_new_revocation_names_the_field_that_is_wrong() {
    let now = at(1_000);
    let cases = [
        (
            json!({"kind": "everything", "value": "x", "reason": "r"}),
            "kind",
        ),
        (
            json!({"kind": "subject", "value": "x", "reason": "r"}),
            "issuer",
        ),
        (
            json!({"kind": "subject", "issuer": "nope", "value": "x", "reason": "r"}),
            "issuer",
        ),
        (
            json!({"kind": "target", "issuer": "ci", "value": "deploy", "reason": "r"}),
            "issuer",
        ),
        (
            json!({"kind": "target", "value": "nope", "reason": "r"}),
            "value",
        ),
        (
            json!({"kind": "issuer", "value": "nope", "reason": "r"}),
            "value",
        ),
        (
            json!({"kind": "token", "value": "abc", "reason": "r"}),
            "value",
        ),
        (
            json!({"kind": "token", "value": "A".repeat(64), "reason": "r"}),
            "value",
        ),
        (
            json!({"kind": "minted", "value": "  ", "reason": "r"}),
            "value",
        ),
        (
            json!({"kind": "minted", "value": "j", "for": "8d", "reason": "r"}),
            "for",
        ),
        (
            json!({"kind": "minted", "value": "j", "for": "0s", "reason": "r"}),
            "for",
        ),
        (
            json!({"kind": "minted", "value": "j", "for": "soon", "reason": "r"}),
            "for",
        ),
        (
            json!({"kind": "minted", "value": "j", "reason": ""}),
            "reason",
        ),
        (
            json!({"kind": "minted", "value": "j".repeat(MAX_FIELD_BYTES + 1), "reason": "r"}),
            "value",
        ),
    ];
    for (body, field) in cases {
        let err = known_check(body.clone(), now).expect_err(&body.to_string());
        assert_eq!(err.field, field, "{body}: {err}");
    }
}

#[test]
fn a_valid_revocation_lasts_24h_by_default_or_what_for_says() {
    let now = at(1_000);
    let r = known_check(
        json!({"kind": "subject", "issuer": "ci", "value": "repo:x", "reason": "leaked"}),
        now,
    )
    .unwrap();
    assert_eq!(r.expires_ms - r.created_ms, 24 * 3600 * 1000);
    assert_eq!(r.issuer.as_deref(), Some("ci"));
    assert_eq!(r.by, "ops:alice");
    let r = known_check(
        json!({"kind": "target", "value": "deploy", "for": "30m", "reason": "r"}),
        now,
    )
    .unwrap();
    assert_eq!(r.expires_ms - r.created_ms, 30 * 60 * 1000);
    assert!(r.live(at(1_000 + 1_799)));
    assert!(!r.live(at(1_000 + 1_800)));
    let view = r.view();
    assert_eq!(view["kind"], "target");
    assert!(view.get("issuer").is_none());
    assert_eq!(view["created"], "1970-01-01T00:16:40Z");
}

#[test]
fn each_kind_covers_its_own_tokens_only() {
    let now = at(100);
    let raw = "header.claims.signature";
    let digest = crate::digest::hex(&crate::digest::sha256(raw.as_bytes()));
    let none = |_: &str| None;
    let cases = [
        (
            revocation(Kind::Subject, Some("ci"), "alice", 200),
            token("ci", "alice", None),
            token("ci", "bob", None),
        ),
        (
            revocation(Kind::Subject, Some("ci"), "alice", 200),
            token("ci", "alice", None),
            token("other", "alice", None),
        ),
        (
            revocation(Kind::Jti, Some("ci"), "j1", 200),
            token("ci", "bob", Some("j1")),
            token("ci", "bob", Some("j2")),
        ),
        (
            revocation(Kind::Issuer, None, "ci", 200),
            token("ci", "anyone", None),
            token("other", "anyone", None),
        ),
        (
            revocation(Kind::Minted, None, "m1", 200),
            token("stsbridge", "x", Some("m1")),
            token("ci", "x", Some("m1")),
        ),
        (
            revocation(Kind::Token, None, &digest, 200),
            token("ci", "bob", None),
            token("ci", "bob", None),
        ),
    ];
    for (i, (r, covered, spared)) in cases.into_iter().enumerate() {
        let set = RevocationSet::new([r.clone()], now);
        let presented = |t| Presented {
            token: t,
            raw: if i == 5 { raw } else { "other.token.bytes" },
            chain: None,
        };
        let hit = set.covering(&presented(&covered), "stsbridge", &none, now);
        assert_eq!(hit.map(|h| h.id.clone()), Some(r.id.clone()), "case {i}");
        let spared_presented = Presented {
            token: &spared,
            raw: "other.token.bytes",
            chain: None,
        };
        assert!(
            set.covering(&spared_presented, "stsbridge", &none, now)
                .is_none(),
            "case {i}"
        );
        // Expired: covers nothing.
        assert!(
            set.covering(&presented(&covered), "stsbridge", &none, at(200))
                .is_none(),
            "case {i}"
        );
    }
}

#[test]
fn a_revoked_party_anywhere_in_the_chain_is_covered() {
    let now = at(100);
    let set = RevocationSet::new(
        [revocation(Kind::Subject, Some("ci"), "svc:gateway", 200)],
        now,
    );
    let trust_of = |iss: &str| (iss == "https://ci.example").then(|| "ci".to_owned());
    let minted = token("stsbridge", "dev:alice", Some("m1"));
    let chain = json!({"sub": "svc:other", "iss": "https://ci.example", "act": {"sub": "svc:gateway", "iss": "https://ci.example"}});
    let presented = Presented {
        token: &minted,
        raw: "x",
        chain: Some(&chain),
    };
    assert!(
        set.covering(&presented, "stsbridge", &trust_of, now)
            .is_some()
    );
    let clean = json!({"sub": "svc:other", "iss": "https://ci.example"});
    let presented = Presented {
        token: &minted,
        raw: "x",
        chain: Some(&clean),
    };
    assert!(
        set.covering(&presented, "stsbridge", &trust_of, now)
            .is_none()
    );
}

#[test]
fn a_target_revocation_covers_that_target() {
    let now = at(100);
    let set = RevocationSet::new([revocation(Kind::Target, None, "deploy", 200)], now);
    assert!(set.of_target("deploy", now).is_some());
    assert!(set.of_target("other", now).is_none());
    assert!(
        RevocationSet::new([], now)
            .of_target("deploy", now)
            .is_none()
    );
}

#[tokio::test]
async fn the_local_file_is_written_whole_and_read_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.json");
    let now = SystemTime::now();
    let store = RevocationStore::local(Some(path.clone())).unwrap();
    assert_eq!(store.backend(), "file");
    let live_for = unix_ms(now) / 1000 + 3600;
    store
        .add(&revocation(Kind::Issuer, None, "ci", live_for), now)
        .await
        .unwrap();
    store
        .add(&revocation(Kind::Minted, None, "old", 1), now)
        .await
        .unwrap();
    // No temporary file left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("revocations.json")]);
    // A new process (a restart) reads it; what expired is gone.
    let again = RevocationStore::local(Some(path.clone())).unwrap();
    let list = again.list(now).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].value, "ci");
    // A change by another writer is noticed and read.
    assert!(!again.changed());
    std::thread::sleep(Duration::from_millis(20));
    let other = RevocationStore::local(Some(path.clone())).unwrap();
    other
        .add(&revocation(Kind::Target, None, "deploy", live_for), now)
        .await
        .unwrap();
    assert!(again.changed());
    assert_eq!(again.list(now).await.unwrap().len(), 2);
    // Removal.
    let removed = again.remove("rev_issuer_ci", now).await.unwrap();
    assert_eq!(removed.map(|r| r.value), Some("ci".to_owned()));
    assert!(again.remove("rev_issuer_ci", now).await.unwrap().is_none());
    assert_eq!(other.list(now).await.unwrap().len(), 1);
}

#[test]
fn a_file_that_is_not_a_revocation_list_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.json");
    std::fs::write(&path, "{\"version\": 1, \"revocations\": [{\"id\": 3}]}").unwrap();
    let err = RevocationStore::local(Some(path.clone()))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("revocations.json"), "{err}");
    std::fs::write(&path, "{\"version\": 2, \"revocations\": []}").unwrap();
    let err = RevocationStore::local(Some(path)).err().expect("refused");
    assert!(err.to_string().contains("version 2"), "{err}");
}
