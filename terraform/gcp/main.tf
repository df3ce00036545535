# The GCP side of stsbridge's trust, for one project: a workload identity pool and OIDC provider
# trusting stsbridge's issuer, whose attribute condition accepts exactly the subjects stsbridge's
# assertions carry, and the bindings that let exactly those principals impersonate the service
# accounts the targets name. The values come from ./bindings, which the test suite evaluates
# offline.

module "bindings" {
  source = "./bindings"

  project_number = var.project_number
  gcp_providers  = var.gcp_providers
  gcp_bindings   = var.gcp_bindings
}

# project_id must be the project whose number the pool provider names carry.
data "google_project" "this" {
  project_id = var.project_id

  lifecycle {
    postcondition {
      condition     = self.number == var.project_number
      error_message = "Project ${var.project_id} has number ${self.number}, not project_number ${var.project_number}."
    }
  }
}

locals {
  # generateAccessToken names a service account as projects/PROJECT/serviceAccounts/EMAIL; a
  # user-managed account's project is in its email, others take the wildcard.
  service_account_ids = {
    for k, m in module.bindings.service_account_members : k => format(
      "projects/%s/serviceAccounts/%s",
      endswith(m.service_account, ".iam.gserviceaccount.com") ? trimsuffix(split("@", m.service_account)[1], ".iam.gserviceaccount.com") : "-",
      m.service_account,
    )
  }

  direct_grants = merge([
    for target, roles in var.direct_access : {
      for role in roles : "${target} ${role}" => {
        role   = role
        member = lookup(module.bindings.direct_principals, target, null)
      }
    }
  ]...)
}

resource "google_iam_workload_identity_pool" "this" {
  for_each = module.bindings.pools

  project                   = var.project_id
  workload_identity_pool_id = each.key
  display_name              = "stsbridge"
  description               = "Assertions minted by stsbridge (${var.issuer_url})"
}

resource "google_iam_workload_identity_pool_provider" "this" {
  for_each = module.bindings.providers

  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.this[each.value.pool_id].workload_identity_pool_id
  workload_identity_pool_provider_id = each.value.provider_id
  display_name                       = "stsbridge"
  description                        = substr("stsbridge targets: ${join(", ", each.value.targets)}", 0, 256)
  attribute_mapping                  = each.value.attribute_mapping
  attribute_condition                = each.value.attribute_condition

  oidc {
    issuer_uri        = var.issuer_url
    allowed_audiences = each.value.allowed_audiences
    jwks_json         = var.jwks_json
  }
}

resource "google_service_account_iam_member" "this" {
  for_each = module.bindings.service_account_members

  service_account_id = local.service_account_ids[each.key]
  role               = each.value.role
  member             = each.value.member

  # The principal exists once its pool does.
  depends_on = [google_iam_workload_identity_pool_provider.this]
}

resource "google_project_iam_member" "direct" {
  for_each = local.direct_grants

  project = var.project_id
  role    = each.value.role
  member  = each.value.member

  lifecycle {
    precondition {
      condition     = each.value.member != null
      error_message = "direct_access names a target of this project without a service account; ${each.key} is not one."
    }
  }

  depends_on = [google_iam_workload_identity_pool_provider.this]
}
