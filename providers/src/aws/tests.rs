use super::*;
use crate::request::AssertionSource;

fn request() -> AwsRequest {
    AwsRequest {
        target: "t".into(),
        assertion: AssertionSource::Mint {
            subject: "target:t".into(),
        },
        role_arn: "arn:aws:iam::111111111111:role/r".into(),
        session_name: "s".into(),
        duration: Duration::from_secs(3600),
        session_policy: None,
        tags: vec![("repository".into(), "acme/payments".into())],
        transitive_tag_keys: vec!["repository".into()],
        source_identity: Some("alice".into()),
        chain: vec![],
    }
}

#[test]
fn tags_and_source_identity_travel_as_the_aws_claims() {
    let claims = first_hop_claims(&request());
    assert_eq!(
        claims[TAGS_CLAIM],
        serde_json::json!({
            "principal_tags": { "repository": ["acme/payments"] },
            "transitive_tag_keys": ["repository"],
        })
    );
    assert_eq!(claims[SOURCE_IDENTITY_CLAIM], "alice");
}

#[test]
fn no_tags_means_no_tag_claim() {
    let mut r = request();
    r.tags.clear();
    r.source_identity = None;
    assert!(first_hop_claims(&r).is_empty());
}

#[test]
fn every_listed_code_gets_its_own_hint() {
    let codes = [
        "InvalidIdentityToken",
        "IDPRejectedClaim",
        "IDPCommunicationError",
        "ExpiredTokenException",
        "MalformedPolicyDocument",
        "PackedPolicyTooLarge",
        "AccessDenied",
    ];
    let mut hints = std::collections::HashSet::new();
    for code in codes {
        match rejected(
            code.into(),
            Some("m"),
            Some("req-1"),
            "arn:aws:iam::1:role/r",
            Hop::WebIdentity,
        ) {
            ProviderError::Rejected {
                code: kept,
                hint,
                request_id,
                ..
            } => {
                assert_eq!(kept, code);
                assert_eq!(request_id.as_deref(), Some("req-1"));
                assert!(
                    hints.insert(hint),
                    "{code} shares its hint with another code"
                );
            }
            other => panic!("{code} mapped to {other:?}"),
        }
    }
}

#[test]
fn throttling_is_not_a_rejection() {
    let e = rejected("Throttling".into(), None, None, "arn", Hop::WebIdentity);
    assert!(matches!(e, ProviderError::Throttled { .. }), "{e:?}");
}

#[test]
fn chained_access_denied_points_at_the_hop_trust() {
    match rejected(
        "AccessDenied".into(),
        None,
        None,
        "arn:aws:iam::2:role/d",
        Hop::Chained,
    ) {
        ProviderError::Rejected { hint, .. } => assert!(hint.contains("previous hop"), "{hint}"),
        other => panic!("{other:?}"),
    }
}
