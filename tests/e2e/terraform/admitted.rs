//! What the clouds would admit by the documents Terraform computed. Each exchange is checked as
//! it happens: exactly one trust statement, binding or federated credential admits the real
//! assertion (or hop), and none admits a near miss of its `sub`, `aud`, external id or
//! principal. At the end the documents are compared with everything the exchanges presented, as
//! sets: no subject, audience, hop, member or credential beyond what the targets need.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};
use stsbridge_e2e::clouds::form_field;
use stsbridge_e2e::iam::{self, near_misses, values};

fn policy(json: &Value) -> Value {
    serde_json::from_str(
        json.as_str()
            .unwrap_or_else(|| panic!("not a policy: {json}")),
    )
    .unwrap()
}

fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap()
}

/// The subjects a pool provider's attribute condition admits. The modules write one form,
/// `assertion.sub in [...]` (a JSON list is a CEL list); any other condition fails here rather
/// than being half understood.
fn condition_subjects(condition: &str) -> BTreeSet<String> {
    condition
        .strip_prefix("assertion.sub in ")
        .and_then(|list| serde_json::from_str::<Vec<String>>(list).ok())
        .unwrap_or_else(|| {
            panic!(
                "attribute condition {condition:?} is not `assertion.sub in [...]`, the only form \
                 this test evaluates: teach it the new form before shipping it"
            )
        })
        .into_iter()
        .collect()
}

/// What the exchanges presented, per cloud resource.
#[derive(Default)]
struct Seen {
    /// Per role: the `sub` of the assertions it was shown by web identity.
    aws_subjects: BTreeMap<String, BTreeSet<String>>,
    /// Per account: the `aud` of the assertions its roles were shown.
    aws_audiences: BTreeMap<String, BTreeSet<String>>,
    /// Per role: the previous role and external id of the chained hops into it.
    aws_hops: BTreeMap<String, BTreeSet<(String, Option<String>)>>,
    /// Per pool provider: the `sub` of the assertions it was shown.
    gcp_subjects: BTreeMap<String, BTreeSet<String>>,
    /// Per pool provider: their `aud`.
    gcp_audiences: BTreeMap<String, BTreeSet<String>>,
    /// The service account IAM members impersonation needed: (account, role, member).
    gcp_members: BTreeSet<(String, String, String)>,
    /// Per target without a service account: its principal.
    gcp_direct: BTreeMap<String, String>,
    /// The federated credentials the assertions needed: (tenant, client id, issuer, subject, audiences).
    azure: BTreeSet<(String, String, String, String, Vec<String>)>,
}

/// Checks exchanges against the documents Terraform computed (`docs`, from the variables
/// `vars`), for stsbridge's issuer at `host`; `verified` verifies an assertion for an audience
/// against the exported JWKS and returns its claims.
pub struct Admitted<'a> {
    docs: &'a Value,
    vars: &'a Value,
    host: &'a str,
    verified: &'a dyn Fn(&str, &str) -> Value,
    seen: Seen,
}

impl<'a> Admitted<'a> {
    pub fn new(
        docs: &'a Value,
        vars: &'a Value,
        host: &'a str,
        verified: &'a dyn Fn(&str, &str) -> Value,
    ) -> Self {
        Admitted {
            docs,
            vars,
            host,
            verified,
            seen: Seen::default(),
        }
    }

    /// The AWS calls of one exchange: the first hop's assertion carries the target's `sub` and
    /// `aud`, and exactly one statement of its role's trust policy allows each action the call
    /// needs for them (and none for a near miss); each chained hop is allowed by exactly one
    /// statement for the previous role with the external id sent (none for a near miss of
    /// either), and the previous role may assume it.
    pub fn aws(&mut self, forms: &[HashMap<String, String>], sub: &str, aud: &str, what: &str) {
        let first = &forms[0];
        assert_eq!(first["Action"], "AssumeRoleWithWebIdentity", "{what}");
        let c = (self.verified)(&first["WebIdentityToken"], aud);
        assert_eq!(c["sub"], sub, "{what}");
        let role = first["RoleArn"].as_str();
        assert!(self.vars["aws_roles"].get(role).is_some(), "{what}: {role}");
        let account = account_of(role);
        let trust = policy(&self.docs["aws"][account]["trust_policies"][role]);
        let provider_arn = format!("arn:aws:iam::{account}:oidc-provider/{}", self.host);
        let host = self.host;
        let allowing = |action: &str, sub: &str, aud: &str| {
            iam::allowing(
                &trust,
                &iam::Request {
                    principal_type: "Federated",
                    principal: &provider_arn,
                    action,
                    context: BTreeMap::from([
                        (format!("{host}:sub"), sub.to_owned()),
                        (format!("{host}:aud"), aud.to_owned()),
                    ]),
                },
            )
        };
        // Session tags and source identity travel in the assertion: the trust must allow
        // sts:TagSession / sts:SetSourceIdentity for it too.
        let mut actions = vec!["sts:AssumeRoleWithWebIdentity"];
        if c.get("https://aws.amazon.com/tags").is_some() {
            actions.push("sts:TagSession");
        }
        if c.get("https://aws.amazon.com/source_identity").is_some() {
            actions.push("sts:SetSourceIdentity");
        }
        for action in actions {
            let by = allowing(action, sub, aud);
            assert_eq!(
                by.len(),
                1,
                "{what}: exactly one statement of the trust policy of {role} must allow {action} \
                 for sub {sub:?}, aud {aud:?}; these do: {by:?}\n{trust}"
            );
            for miss in near_misses(sub) {
                let by = allowing(action, &miss, aud);
                assert!(
                    by.is_empty(),
                    "{what}: the trust policy of {role} allows {action} for sub {miss:?} (the \
                     target's is {sub:?}): {by:?}\n{trust}"
                );
            }
            for miss in near_misses(aud) {
                let by = allowing(action, sub, &miss);
                assert!(
                    by.is_empty(),
                    "{what}: the trust policy of {role} allows {action} for aud {miss:?}: {by:?}\n{trust}"
                );
            }
        }
        let seen = &mut self.seen;
        seen.aws_subjects
            .entry(role.to_owned())
            .or_default()
            .insert(sub.to_owned());
        seen.aws_audiences
            .entry(account.to_owned())
            .or_default()
            .insert(aud.to_owned());

        let mut previous = role.to_owned();
        for hop in &forms[1..] {
            assert_eq!(hop["Action"], "AssumeRole", "{what}");
            let role = hop["RoleArn"].as_str();
            let trust = policy(&self.docs["aws"][account_of(role)]["trust_policies"][role]);
            let external_id = hop.get("ExternalId").map(String::as_str);
            let allowing = |action: &str, principal: &str, external_id: Option<&str>| {
                iam::allowing(
                    &trust,
                    &iam::Request {
                        principal_type: "AWS",
                        principal,
                        action,
                        context: external_id
                            .map(|id| ("sts:ExternalId".to_owned(), id.to_owned()))
                            .into_iter()
                            .collect(),
                    },
                )
            };
            let mut actions = vec!["sts:AssumeRole"];
            if hop.contains_key("Tags.member.1.Key") {
                actions.push("sts:TagSession");
            }
            if hop.contains_key("SourceIdentity") {
                actions.push("sts:SetSourceIdentity");
            }
            for action in actions {
                let by = allowing(action, &previous, external_id);
                assert_eq!(
                    by.len(),
                    1,
                    "{what}: exactly one statement of the trust policy of {role} must allow \
                     {action} for {previous} with external id {external_id:?}; these do: {by:?}\n{trust}"
                );
                for miss in near_misses(&previous) {
                    let by = allowing(action, &miss, external_id);
                    assert!(
                        by.is_empty(),
                        "{what}: the trust policy of {role} allows {action} for {miss}: {by:?}\n{trust}"
                    );
                }
                if let Some(id) = external_id {
                    let mut misses: Vec<Option<String>> =
                        near_misses(id).into_iter().map(Some).collect();
                    misses.push(None);
                    for miss in misses {
                        let by = allowing(action, &previous, miss.as_deref());
                        assert!(
                            by.is_empty(),
                            "{what}: the trust policy of {role} allows {action} for {previous} \
                             with external id {miss:?} (the hop's is {id:?}): {by:?}\n{trust}"
                        );
                    }
                }
            }
            let allowed = policy(
                &self.docs["aws"][account_of(&previous)]["permission_policies"][previous.as_str()],
            );
            assert!(
                allowed["Statement"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["Resource"] == role
                        && values(&s["Action"]).contains(&"sts:AssumeRole")),
                "{what}: {previous} may not assume {role}: {allowed}"
            );
            self.seen
                .aws_hops
                .entry(role.to_owned())
                .or_default()
                .insert((previous.clone(), external_id.map(str::to_owned)));
            previous = role.to_owned();
        }
    }

    /// The Google calls of one exchange: the STS exchange's assertion carries the target's `sub`
    /// and `aud`; its pool provider allows that audience and no near miss of it, maps
    /// `google.subject` from `sub`, and its attribute condition admits that subject and no near
    /// miss of it; the service account impersonated has exactly one binding of the target's
    /// principal (none of a near miss's), and each delegate the next (or, without a service
    /// account, the principal is to be granted resources directly).
    pub fn gcp(
        &mut self,
        requests: &[wiremock::Request],
        target: &str,
        sub: &str,
        aud: &str,
        what: &str,
    ) {
        let exchange = requests
            .iter()
            .find(|r| r.url.path() == "/v1/token")
            .unwrap_or_else(|| panic!("{what}: no STS exchange"));
        let c = (self.verified)(&form_field(exchange, "subject_token").unwrap(), aud);
        assert_eq!(c["sub"], sub, "{what}");
        let audience = form_field(exchange, "audience").unwrap();
        let key = audience.trim_start_matches("//iam.googleapis.com/");
        let number = key.split('/').nth(1).unwrap();
        let provider = &self.docs["gcp"][number]["providers"][key];
        assert!(provider.is_object(), "{what}: no pool provider {key}");
        let audiences = values(&provider["allowed_audiences"]);
        assert!(audiences.contains(&aud), "{what}: {provider}");
        for miss in near_misses(aud) {
            assert!(
                !audiences.contains(&miss.as_str()),
                "{what}: {key} allows audience {miss:?}: {provider}"
            );
        }
        assert_eq!(
            provider["attribute_mapping"],
            json!({ "google.subject": "assertion.sub" }),
            "{what}: the principal's subject must be the assertion's sub, and only that"
        );
        let subjects = condition_subjects(provider["attribute_condition"].as_str().unwrap());
        assert!(subjects.contains(sub), "{what}: {subjects:?}");
        for miss in near_misses(sub) {
            assert!(
                !subjects.contains(&miss),
                "{what}: {key}'s condition admits {miss:?}: {subjects:?}"
            );
        }
        let pool = key.split("/providers/").next().unwrap();
        let principal = |sub: &str| format!("principal://iam.googleapis.com/{pool}/subject/{sub}");
        self.seen
            .gcp_subjects
            .entry(key.to_owned())
            .or_default()
            .insert(sub.to_owned());
        self.seen
            .gcp_audiences
            .entry(key.to_owned())
            .or_default()
            .insert(aud.to_owned());

        let Some(generate) = requests
            .iter()
            .find(|r| r.url.path().ends_with(":generateAccessToken"))
        else {
            assert_eq!(
                self.docs["gcp"][number]["direct_principals"][target],
                principal(sub).as_str(),
                "{what}"
            );
            self.seen
                .gcp_direct
                .insert(target.to_owned(), principal(sub));
            return;
        };
        let email = generate
            .url
            .path()
            .trim_start_matches("/v1/projects/-/serviceAccounts/")
            .trim_end_matches(":generateAccessToken");
        // generateAccessToken with delegates: the principal reaches the first delegate, each
        // delegate the next, the last the service account (as gcp/bindings grants them).
        let body: Value = serde_json::from_slice(&generate.body).unwrap();
        let mut chain: Vec<String> = values(&body["delegates"])
            .iter()
            .map(|d| {
                d.trim_start_matches("projects/-/serviceAccounts/")
                    .to_owned()
            })
            .collect();
        chain.push(email.to_owned());
        let members: Vec<&Value> = self.docs["gcp"][number]["service_account_members"]
            .as_object()
            .unwrap()
            .values()
            .collect();
        let bindings = |account: &str, role: &str, member: &str| {
            members
                .iter()
                .filter(|m| {
                    m["service_account"] == account && m["role"] == role && m["member"] == member
                })
                .count()
        };
        let first = "roles/iam.workloadIdentityUser";
        assert_eq!(
            bindings(&chain[0], first, &principal(sub)),
            1,
            "{what}: exactly one binding of {} on {}: {members:?}",
            principal(sub),
            chain[0]
        );
        for miss in near_misses(sub) {
            assert_eq!(
                bindings(&chain[0], first, &principal(&miss)),
                0,
                "{what}: {} may impersonate {}: {members:?}",
                principal(&miss),
                chain[0]
            );
        }
        self.seen
            .gcp_members
            .insert((chain[0].clone(), first.to_owned(), principal(sub)));
        for pair in chain.windows(2) {
            let (role, member) = (
                "roles/iam.serviceAccountTokenCreator",
                format!("serviceAccount:{}", pair[0]),
            );
            assert_eq!(bindings(&pair[1], role, &member), 1, "{what}: {members:?}");
            self.seen
                .gcp_members
                .insert((pair[1].clone(), role.to_owned(), member));
        }
    }

    /// The Entra ID call of one exchange: the client assertion carries the target's `sub` and
    /// `aud`, and exactly one federated credential of its `client_id` has that issuer, subject
    /// and audience (none a near miss of any of them).
    pub fn azure(&mut self, requests: &[wiremock::Request], sub: &str, aud: &str, what: &str) {
        let request = requests.last().unwrap();
        let client_id = form_field(request, "client_id").unwrap();
        let c = (self.verified)(&form_field(request, "client_assertion").unwrap(), aud);
        assert_eq!(c["sub"], sub, "{what}");
        let issuer = c["iss"].as_str().unwrap();
        let tenant = request.url.path().split('/').nth(1).unwrap();
        let credentials = self.docs["azure"][tenant]["credentials"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: no federated credentials in tenant {tenant}"));
        let matching = |issuer: &str, sub: &str, aud: &str| {
            credentials
                .values()
                .filter(|cred| {
                    cred["client_id"] == client_id.as_str()
                        && cred["issuer"] == issuer
                        && cred["subject"] == sub
                        && values(&cred["audiences"]) == [aud]
                })
                .count()
        };
        assert_eq!(
            matching(issuer, sub, aud),
            1,
            "{what}: exactly one federated credential of {client_id} must match: {credentials:?}"
        );
        for miss in near_misses(sub) {
            assert_eq!(matching(issuer, &miss, aud), 0, "{what}: subject {miss:?}");
        }
        for miss in near_misses(aud) {
            assert_eq!(matching(issuer, sub, &miss), 0, "{what}: audience {miss:?}");
        }
        for miss in near_misses(issuer) {
            assert_eq!(matching(&miss, sub, aud), 0, "{what}: issuer {miss:?}");
        }
        self.seen.azure.insert((
            tenant.to_owned(),
            client_id,
            issuer.to_owned(),
            sub.to_owned(),
            vec![aud.to_owned()],
        ));
    }

    /// The documents admit nothing the exchanges did not need: compared as sets per role, pool
    /// provider and tenant with what was presented. Call after every target has been exchanged.
    pub fn nothing_else(&self) {
        let (docs, host, seen) = (self.docs, self.host, &self.seen);
        let mut subjects = BTreeMap::<String, BTreeSet<String>>::new();
        let mut hops = BTreeMap::<String, BTreeSet<(String, Option<String>)>>::new();
        let mut audiences = BTreeMap::<String, BTreeSet<String>>::new();
        for (account, d) in docs["aws"].as_object().unwrap() {
            audiences.insert(
                account.clone(),
                values(&d["audiences"])
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            );
            for (role, trust) in d["trust_policies"].as_object().unwrap() {
                for s in policy(trust)["Statement"].as_array().unwrap() {
                    let condition = s["Condition"].as_object();
                    // Every value any operator compares the key with, and a marker for a
                    // statement that does not compare it at all (it admits every value).
                    let compared = |key: &str| -> Vec<Option<String>> {
                        let found: Vec<Option<String>> = condition
                            .into_iter()
                            .flat_map(|ops| ops.values())
                            .flat_map(|keys| values(&keys[key]))
                            .map(|v| Some(v.to_owned()))
                            .collect();
                        if found.is_empty() { vec![None] } else { found }
                    };
                    for p in values(&s["Principal"]["Federated"]) {
                        assert_eq!(
                            p,
                            format!("arn:aws:iam::{account}:oidc-provider/{host}"),
                            "{role}: {s}"
                        );
                        for sub in compared(&format!("{host}:sub")) {
                            subjects
                                .entry(role.clone())
                                .or_default()
                                .insert(sub.unwrap_or_else(|| "(any sub)".into()));
                        }
                    }
                    for p in values(&s["Principal"]["AWS"]) {
                        for id in compared("sts:ExternalId") {
                            hops.entry(role.clone())
                                .or_default()
                                .insert((p.to_owned(), id));
                        }
                    }
                }
            }
        }
        assert_eq!(
            subjects, seen.aws_subjects,
            "the subjects the trust policies admit by web identity, per role, against the subjects \
             of the targets that reach them"
        );
        assert_eq!(
            hops, seen.aws_hops,
            "the roles (and external ids) the trust policies admit, per role, against the chained hops"
        );
        audiences.retain(|_, a| !a.is_empty());
        assert_eq!(
            audiences, seen.aws_audiences,
            "the OIDC provider's audiences per account"
        );

        let mut gcp_subjects = BTreeMap::new();
        let mut gcp_audiences = BTreeMap::new();
        let mut members = BTreeSet::new();
        let mut direct = BTreeMap::new();
        for project in docs["gcp"].as_object().unwrap().values() {
            for (key, p) in project["providers"].as_object().unwrap() {
                gcp_subjects.insert(
                    key.clone(),
                    condition_subjects(p["attribute_condition"].as_str().unwrap()),
                );
                gcp_audiences.insert(
                    key.clone(),
                    values(&p["allowed_audiences"])
                        .into_iter()
                        .map(str::to_owned)
                        .collect::<BTreeSet<_>>(),
                );
            }
            for m in project["service_account_members"]
                .as_object()
                .unwrap()
                .values()
            {
                let text = |k: &str| m[k].as_str().unwrap().to_owned();
                members.insert((text("service_account"), text("role"), text("member")));
            }
            for (target, principal) in project["direct_principals"].as_object().unwrap() {
                direct.insert(target.clone(), principal.as_str().unwrap().to_owned());
            }
        }
        assert_eq!(
            gcp_subjects, seen.gcp_subjects,
            "the subjects the pool providers' attribute conditions admit, against the targets'"
        );
        assert_eq!(
            gcp_audiences, seen.gcp_audiences,
            "the pool providers' allowed audiences"
        );
        assert_eq!(
            members, seen.gcp_members,
            "the service account IAM members, against what impersonation needed"
        );
        assert_eq!(
            direct, seen.gcp_direct,
            "the principals to be granted resources directly"
        );

        let mut azure = BTreeSet::new();
        for (tenant, t) in docs["azure"].as_object().unwrap() {
            for cred in t["credentials"].as_object().unwrap().values() {
                let text = |k: &str| cred[k].as_str().unwrap().to_owned();
                azure.insert((
                    tenant.clone(),
                    text("client_id"),
                    text("issuer"),
                    text("subject"),
                    values(&cred["audiences"])
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                ));
            }
        }
        assert_eq!(
            azure, seen.azure,
            "the federated identity credentials, against the targets' assertions"
        );
    }
}
