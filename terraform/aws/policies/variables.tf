variable "issuer_url" {
  description = "stsbridge's issuer URL (issuer.url of its config): the iss of every assertion it mints."
  type        = string

  validation {
    condition     = can(regex("^https://[^/?#]+(/[^?#]*[^/?#])?$", var.issuer_url))
    error_message = "issuer_url must be an https URL with no query, fragment or trailing slash, exactly as issuer.url in stsbridge's config."
  }
}

variable "account_id" {
  description = "The AWS account this instance manages: only roles of aws_roles in this account are considered."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be a 12-digit AWS account id."
  }
}

variable "aws_roles" {
  description = "The aws_roles map that `stsbridge terraform-vars` prints, keyed by role ARN."
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

  validation {
    condition = alltrue([
      for arn, r in var.aws_roles : arn == "arn:${r.partition}:iam::${r.account_id}:role${r.path}${r.name}"
    ])
    error_message = "Each aws_roles key must be the role's ARN, built from its partition, account_id, path and name: regenerate the file with `stsbridge terraform-vars`."
  }

  validation {
    condition = alltrue([
      for r in var.aws_roles : r.web_identity == null || try(length(r.web_identity.subjects) + length(r.web_identity.subject_patterns) > 0, false)
    ])
    error_message = "A role with web_identity trust needs at least one subject or subject pattern."
  }

  validation {
    condition = alltrue([
      for r in var.aws_roles : r.max_session_duration >= 3600 && r.max_session_duration <= 43200
    ])
    error_message = "max_session_duration must be between 3600 and 43200 seconds, as IAM allows."
  }
}
