variable "issuer_url" {
  description = "stsbridge's issuer URL (issuer.url of its config): the credentials' issuer, compared exactly by Entra ID."
  type        = string

  validation {
    condition     = can(regex("^https://[^/?#]+(/[^?#]*[^/?#])?$", var.issuer_url))
    error_message = "issuer_url must be an https URL with no query, fragment or trailing slash, exactly as issuer.url in stsbridge's config."
  }
}

variable "tenant_id" {
  description = "The tenant this instance manages: only credentials of azure_credentials in this tenant are considered."
  type        = string
}

variable "azure_credentials" {
  description = "The azure_credentials map that `stsbridge terraform-vars` prints, keyed by credential name."
  type = map(object({
    tenant_id = string
    client_id = string
    subject   = string
    audience  = string
    targets   = list(string)
  }))

  validation {
    condition     = alltrue([for name in keys(var.azure_credentials) : can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$", name))])
    error_message = "Credential names are 3-120 letters, digits, '-' and '_', starting with a letter or digit."
  }

  validation {
    condition = alltrue([
      for id in distinct([for c in var.azure_credentials : c.client_id]) :
      length([for c in var.azure_credentials : c if c.client_id == id]) <= 20
    ])
    error_message = "Entra ID holds at most 20 federated identity credentials per identity."
  }
}
