# The Azure side of stsbridge's trust, for one tenant: on each identity a target names, a
# federated identity credential for stsbridge's issuer with exactly the subject stsbridge's
# assertions for that target carry and the audience api://AzureADTokenExchange. User-assigned
# managed identities get azurerm credentials, app registrations azuread ones. The values come
# from ./credentials, which the test suite evaluates offline.

module "credentials" {
  source = "./credentials"

  issuer_url        = var.issuer_url
  tenant_id         = var.tenant_id
  azure_credentials = var.azure_credentials
}

locals {
  managed_identity = {
    for name, c in module.credentials.credentials : name => merge(c, {
      identity_id = var.identities[c.client_id].user_assigned_identity_id
    }) if try(var.identities[c.client_id].user_assigned_identity_id, null) != null
  }

  app_registration = {
    for name, c in module.credentials.credentials : name => c if !contains(keys(local.managed_identity), name)
  }
}

resource "azurerm_federated_identity_credential" "this" {
  for_each = local.managed_identity

  name                      = each.key
  user_assigned_identity_id = each.value.identity_id
  issuer                    = each.value.issuer
  subject                   = each.value.subject
  audience                  = each.value.audiences
}

data "azuread_application" "this" {
  for_each = toset([for c in local.app_registration : c.client_id])

  client_id = each.key
}

resource "azuread_application_federated_identity_credential" "this" {
  #checkov:skip=CKV_AZURE_249:The issuer is stsbridge's, not GitHub's, and the subject is one exact value from `stsbridge terraform-vars`, which refuses subjects rendered per caller for Azure; the check cannot see the value through each.value.
  for_each = local.app_registration

  application_id = data.azuread_application.this[each.value.client_id].id
  display_name   = each.key
  description    = substr("stsbridge targets: ${join(", ", each.value.targets)}", 0, 600)
  issuer         = each.value.issuer
  subject        = each.value.subject
  audiences      = each.value.audiences
}
