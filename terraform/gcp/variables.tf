variable "issuer_url" {
  description = "stsbridge's issuer URL (issuer.url of its config; issuer_url of `stsbridge terraform-vars`): the pool providers' issuer URI."
  type        = string

  validation {
    condition     = can(regex("^https://[^/?#]+(/[^?#]*[^/?#])?$", var.issuer_url))
    error_message = "issuer_url must be an https URL with no query, fragment or trailing slash, exactly as issuer.url in stsbridge's config."
  }
}

variable "project_id" {
  description = "The project (id) the google provider of this instance manages: where the workload identity pools are created."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project id (6-30 lower-case letters, digits and hyphens)."
  }
}

variable "project_number" {
  description = "The number of project_id, as in the targets' pool provider names (//iam.googleapis.com/projects/NUMBER/...). Only providers of that project are created; the module checks it against project_id."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+$", var.project_number))
    error_message = "project_number is the project's number (digits)."
  }
}

variable "gcp_providers" {
  description = "The gcp_providers map that `stsbridge terraform-vars` prints, keyed by provider resource name. Pass it unchanged."
  type = map(object({
    project_number    = string
    pool_id           = string
    provider_id       = string
    allowed_audiences = list(string)
    subjects          = list(string)
    targets           = list(string)
  }))
}

variable "gcp_bindings" {
  description = "The gcp_bindings map that `stsbridge terraform-vars` prints, keyed by target name. Pass it unchanged."
  type = map(object({
    provider        = string
    subject         = string
    principal       = string
    service_account = optional(string)
    delegates       = optional(list(string), [])
  }))
}

variable "jwks_json" {
  description = "The JWKS document (contents of jwks.json from `stsbridge issuer export`) to upload to the providers, for an issuer Google cannot reach. Re-apply after every `stsbridge keys rotate`, before the new key signs. Null: Google fetches the JWKS from issuer_url."
  type        = string
  default     = null

  validation {
    condition     = var.jwks_json == null || can(length(jsondecode(var.jwks_json).keys) > 0)
    error_message = "jwks_json must be a JWKS document with at least one key."
  }
}

variable "direct_access" {
  description = "Project roles to grant directly to the principal of targets without a service account (they use the federated token itself), keyed by target name, e.g. { orders-fed = [\"roles/storage.objectViewer\"] }."
  type        = map(list(string))
  default     = {}

  validation {
    condition     = alltrue([for r in flatten(values(var.direct_access)) : can(regex("^(roles|projects/[^/]+/roles|organizations/[0-9]+/roles)/[A-Za-z0-9_.]+$", r))])
    error_message = "direct_access values must be IAM role names like roles/storage.objectViewer."
  }
}
