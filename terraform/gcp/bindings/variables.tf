variable "project_number" {
  description = "The number of the project that holds the workload identity pools this instance manages: only providers of gcp_providers in this project are considered."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+$", var.project_number))
    error_message = "project_number is the project's number (digits), as in the pool provider's name."
  }
}

variable "gcp_providers" {
  description = "The gcp_providers map that `stsbridge terraform-vars` prints, keyed by provider resource name."
  type = map(object({
    project_number    = string
    pool_id           = string
    provider_id       = string
    allowed_audiences = list(string)
    subjects          = list(string)
    targets           = list(string)
  }))

  validation {
    condition = alltrue([
      for k, p in var.gcp_providers : k == "projects/${p.project_number}/locations/global/workloadIdentityPools/${p.pool_id}/providers/${p.provider_id}"
    ])
    error_message = "Each gcp_providers key must be the provider's resource name: regenerate the file with `stsbridge terraform-vars`."
  }

  validation {
    condition     = alltrue([for p in var.gcp_providers : length(p.allowed_audiences) >= 1 && length(p.allowed_audiences) <= 10])
    error_message = "A pool provider accepts between 1 and 10 allowed audiences."
  }
}

variable "gcp_bindings" {
  description = "The gcp_bindings map that `stsbridge terraform-vars` prints, keyed by target name."
  type = map(object({
    provider        = string
    subject         = string
    principal       = string
    service_account = optional(string)
    delegates       = optional(list(string), [])
  }))

  validation {
    condition     = alltrue([for b in var.gcp_bindings : length(b.subject) >= 1 && length(b.subject) <= 127])
    error_message = "google.subject holds at most 127 bytes."
  }
}
