variable "issuer_url" {
  description = "stsbridge's issuer URL (issuer.url of its config; issuer_url of `stsbridge terraform-vars`). IAM fetches {issuer_url}/.well-known/openid-configuration from it over HTTPS."
  type        = string

  validation {
    condition     = can(regex("^https://[^/?#]+(/[^?#]*[^/?#])?$", var.issuer_url))
    error_message = "issuer_url must be an https URL with no query, fragment or trailing slash, exactly as issuer.url in stsbridge's config."
  }
}

variable "account_id" {
  description = "The AWS account the provider of this module instance is in. Only the roles of aws_roles in this account are created, so one variables file feeds one instance per account."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be a 12-digit AWS account id."
  }
}

variable "aws_roles" {
  description = "The aws_roles map that `stsbridge terraform-vars` prints, keyed by role ARN. Pass it unchanged: the subjects, audiences and chain trust in it are those stsbridge's assertions carry."
  type = map(object({
    partition  = string
    account_id = string
    name       = string
    path       = string
    targets    = list(string)
    web_identity = optional(object({
      audience            = string
      subjects            = optional(list(string), [])
      subject_patterns    = optional(list(string), [])
      tag_session         = bool
      set_source_identity = bool
    }))
    trusted_roles = optional(list(object({
      role_arn            = string
      external_id         = optional(string)
      external_id_pattern = optional(string)
      tag_session         = bool
      set_source_identity = bool
    })), [])
    assumes = optional(list(object({
      role_arn            = string
      tag_session         = bool
      set_source_identity = bool
    })), [])
    max_session_duration = number
  }))
}

variable "create_oidc_provider" {
  description = "Create the IAM OIDC provider for issuer_url in this account when a role here trusts it. Set false where the provider already exists (one per issuer URL per account); its ARN is derived from the URL."
  type        = bool
  default     = true
}

variable "thumbprint_list" {
  description = "Certificate thumbprints for the OIDC provider. Leave empty: IAM verifies the issuer's certificate against its trusted CAs."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.thumbprint_list : can(regex("^[0-9a-fA-F]{40}$", t))])
    error_message = "Each thumbprint is 40 hex digits (SHA-1 of the certificate)."
  }
}

variable "managed_policy_arns" {
  description = "What each role may do once assumed: managed policy ARNs to attach, keyed by role ARN (keys of aws_roles). Roles of other accounts are ignored here."
  type        = map(list(string))
  default     = {}

  validation {
    condition     = alltrue([for p in flatten(values(var.managed_policy_arns)) : can(regex("^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$", p))])
    error_message = "managed_policy_arns values must be IAM policy ARNs."
  }
}

variable "permissions_boundary" {
  description = "ARN of a permissions boundary policy to set on every role created, or null."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource created."
  type        = map(string)
  default     = {}
}
