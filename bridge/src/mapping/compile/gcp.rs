//! GCP targets: workload identity pool provider audiences, service accounts, scopes, lifetimes.

use super::*;

impl Builder {
    pub(super) fn gcp_target(
        &mut self,
        file: &Path,
        at: &str,
        g: file::GcpTargetFile,
    ) -> Option<GcpTarget> {
        let before = self.errors.len();
        if !stsbridge_providers::gcp::valid_pool_provider_audience(&g.audience) {
            self.err(
                file,
                format!("{at}.audience"),
                format!(
                    "{:?} is not a workload identity pool provider like \
                     //iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
                    g.audience
                ),
            );
        }
        if let Some(sa) = &g.service_account
            && !stsbridge_providers::gcp::valid_service_account(sa)
        {
            self.err(
                file,
                format!("{at}.service_account"),
                format!("{sa:?} is not a service account email like name@project.iam.gserviceaccount.com"),
            );
        }
        for (j, d) in g.delegates.iter().enumerate() {
            if !stsbridge_providers::gcp::valid_service_account(d) {
                self.err(
                    file,
                    format!("{at}.delegates[{j}]"),
                    format!("{d:?} is not a service account email"),
                );
            }
        }
        if g.service_account.is_none() && !g.delegates.is_empty() {
            self.err(
                file,
                format!("{at}.delegates"),
                "delegates need a service_account to impersonate".into(),
            );
        }
        let max = if g.allow_lifetime_extension {
            stsbridge_providers::gcp::MAX_EXTENDED_LIFETIME
        } else {
            stsbridge_providers::gcp::MAX_LIFETIME
        };
        let lifetime = match (g.lifetime, &g.service_account) {
            (Some(l), None) => {
                self.err(
                    file,
                    format!("{at}.lifetime"),
                    format!(
                        "{}: Google sets the lifetime of a federated token itself; a lifetime needs a service_account",
                        format_duration(l.0)
                    ),
                );
                l.0
            }
            (Some(l), Some(_)) => l.0,
            (None, _) => stsbridge_providers::gcp::MAX_LIFETIME,
        };
        if lifetime < MIN_TOKEN_LIFETIME || lifetime > max {
            let why = if g.allow_lifetime_extension {
                String::new()
            } else {
                "; up to 12h needs the organization policy iam.allowServiceAccountCredentialLifetimeExtension \
                 and allow_lifetime_extension: true"
                    .to_owned()
            };
            self.err(
                file,
                format!("{at}.lifetime"),
                format!(
                    "{} is out of range: between {} and {}{why}",
                    format_duration(lifetime),
                    format_duration(MIN_TOKEN_LIFETIME),
                    format_duration(max)
                ),
            );
        }
        let mut scopes = if g.scopes.is_empty() {
            vec![stsbridge_providers::gcp::CLOUD_PLATFORM.to_owned()]
        } else {
            g.scopes
        };
        for (j, scope) in scopes.iter().enumerate() {
            if !valid_scope_token(scope) {
                self.err(
                    file,
                    format!("{at}.scopes[{j}]"),
                    format!("{scope:?} is not an OAuth scope"),
                );
            }
        }
        scopes.sort();
        scopes.dedup();
        let assertion_audience = g
            .assertion_audience
            .unwrap_or_else(|| format!("https:{}", g.audience));
        if assertion_audience.is_empty() {
            self.err(
                file,
                format!("{at}.assertion_audience"),
                "must not be empty".into(),
            );
        }
        if self.errors.len() > before {
            return None;
        }
        Some(GcpTarget {
            audience: g.audience,
            assertion_audience,
            service_account: g.service_account,
            scopes,
            lifetime,
            delegates: g.delegates,
        })
    }
}
