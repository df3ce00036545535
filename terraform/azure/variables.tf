variable "issuer_url" {
  description = "stsbridge's issuer URL (issuer.url of its config; issuer_url of `stsbridge terraform-vars`). Entra ID compares it exactly with the assertion's iss and fetches its discovery document over HTTPS."
  type        = string

  validation {
    condition     = can(regex("^https://[^/?#]+(/[^?#]*[^/?#])?$", var.issuer_url))
    error_message = "issuer_url must be an https URL with no query, fragment or trailing slash, exactly as issuer.url in stsbridge's config."
  }
}

variable "tenant_id" {
  description = "The tenant the providers of this instance manage: only credentials of azure_credentials for this tenant are created."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", var.tenant_id)) || can(regex("^[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$", var.tenant_id))
    error_message = "tenant_id is the tenant's GUID or a verified domain, as in the targets' azure.tenant_id."
  }
}

variable "azure_credentials" {
  description = "The azure_credentials map that `stsbridge terraform-vars` prints, keyed by credential name. Pass it unchanged."
  type = map(object({
    tenant_id = string
    client_id = string
    subject   = string
    audience  = string
    targets   = list(string)
  }))
}

variable "identities" {
  description = "Where each client id lives, keyed by client id. A user-assigned managed identity needs its resource id; a client id not listed here (or with a null id) is an app registration, found by its client id."
  type = map(object({
    user_assigned_identity_id = optional(string)
  }))
  default = {}

  validation {
    condition = alltrue([
      for i in values(var.identities) : i.user_assigned_identity_id == null || can(regex("^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.ManagedIdentity/userAssignedIdentities/[^/]+$", i.user_assigned_identity_id))
    ])
    error_message = "user_assigned_identity_id must be a resource id like /subscriptions/S/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/NAME."
  }
}
