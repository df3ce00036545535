# Pure computation, no provider: the federated identity credentials of one tenant, from the
# variables `stsbridge terraform-vars` prints. The azure module applies them; the test suite
# evaluates this module offline to check them against the assertions stsbridge mints.

locals {
  credentials = {
    for name, c in var.azure_credentials : name => {
      client_id = c.client_id
      issuer    = var.issuer_url
      subject   = c.subject
      audiences = [c.audience]
      targets   = c.targets
    } if lower(c.tenant_id) == lower(var.tenant_id)
  }
}
