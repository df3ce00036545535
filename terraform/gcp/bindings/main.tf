# Pure computation, no provider: the pools, providers and IAM bindings of one project, from the
# variables `stsbridge terraform-vars` prints. The gcp module applies them; the test suite
# evaluates this module offline to check them against the assertions stsbridge mints.

locals {
  providers = { for k, p in var.gcp_providers : k => p if p.project_number == var.project_number }

  pools = toset([for p in local.providers : p.pool_id])

  # Only the assertions stsbridge mints for these targets are accepted: the subjects as a CEL
  # list (JSON string literals are CEL string literals).
  attribute_conditions = {
    for k, p in local.providers : k => "assertion.sub in ${jsonencode(sort(p.subjects))}"
  }

  bindings = { for t, b in var.gcp_bindings : t => b if contains(keys(local.providers), b.provider) }

  # Impersonation: the target's principal may mint tokens for the first service account of its
  # chain (roles/iam.workloadIdentityUser); each service account of a delegation chain may for
  # the next (roles/iam.serviceAccountTokenCreator), as generateAccessToken requires.
  chains = {
    for t, b in local.bindings : t => concat(b.delegates, [b.service_account]) if b.service_account != null
  }

  service_account_members = merge([
    for t, chain in local.chains : merge(
      {
        "${t} 0" = {
          service_account = chain[0]
          role            = "roles/iam.workloadIdentityUser"
          member          = local.bindings[t].principal
        }
      },
      {
        for i in range(1, length(chain)) : "${t} ${i}" => {
          service_account = chain[i]
          role            = "roles/iam.serviceAccountTokenCreator"
          member          = "serviceAccount:${chain[i - 1]}"
        }
      },
    )
  ]...)

  # Targets without a service account use the federated token itself: grant their principal
  # access to resources directly.
  direct_principals = { for t, b in local.bindings : t => b.principal if b.service_account == null }
}
