//! Azure targets: tenant and client ids, `/.default` scopes.

use super::*;

impl Builder {
    pub(super) fn azure_target(
        &mut self,
        file: &Path,
        at: &str,
        a: file::AzureTargetFile,
    ) -> Option<AzureTarget> {
        let before = self.errors.len();
        if ["common", "organizations", "consumers"]
            .contains(&a.tenant_id.to_ascii_lowercase().as_str())
        {
            self.err(
                file,
                format!("{at}.tenant_id"),
                format!("{:?} is a multi-tenant alias; the client-credentials grant needs the tenant's id or domain", a.tenant_id),
            );
        } else if !stsbridge_providers::azure::is_guid(&a.tenant_id)
            && !stsbridge_providers::azure::is_domain(&a.tenant_id)
        {
            self.err(
                file,
                format!("{at}.tenant_id"),
                format!(
                    "{:?} is neither a tenant GUID nor a domain like contoso.onmicrosoft.com",
                    a.tenant_id
                ),
            );
        }
        if !stsbridge_providers::azure::is_guid(&a.client_id) {
            self.err(
                file,
                format!("{at}.client_id"),
                format!("{:?} is not an application (client) id GUID", a.client_id),
            );
        }
        let resource = a.scope.strip_suffix("/.default");
        if resource.is_none_or(|r| r.is_empty()) || !valid_scope_token(&a.scope) {
            self.err(
                file,
                format!("{at}.scope"),
                format!("{:?} must be a resource followed by /.default, like https://storage.azure.com/.default", a.scope),
            );
        }
        if self.errors.len() > before {
            return None;
        }
        Some(AzureTarget {
            tenant_id: a.tenant_id,
            client_id: a.client_id,
            scope: a.scope,
        })
    }
}
