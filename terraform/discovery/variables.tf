variable "bucket_name" {
  description = "Name of the S3 bucket to create. stsbridge's issuer.url must then be https://BUCKET.s3.REGION.amazonaws.com (the issuer_url output), set before `stsbridge issuer export`."
  type        = string

  validation {
    # Virtual-hosted-style HTTPS needs a name without dots (the wildcard certificate covers one label).
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 lower-case letters, digits and hyphens, with no dots (S3's HTTPS certificate covers BUCKET.s3.REGION.amazonaws.com only without them)."
  }
}

variable "export_dir" {
  description = "The directory `stsbridge issuer export --config FILE --out DIR` wrote: it holds .well-known/openid-configuration and .well-known/jwks.json."
  type        = string

  validation {
    condition     = fileexists("${var.export_dir}/.well-known/openid-configuration") && fileexists("${var.export_dir}/.well-known/jwks.json")
    error_message = "export_dir must hold .well-known/openid-configuration and .well-known/jwks.json: run `stsbridge issuer export --config FILE --out DIR` first."
  }
}

variable "cache_max_age" {
  description = "Cache-Control max-age of the two documents, in seconds. Keep it well under issuer.keys.publish_before_use so that clouds see a staged key before it signs."
  type        = number
  default     = 300

  validation {
    condition     = var.cache_max_age >= 0 && var.cache_max_age <= 3600
    error_message = "cache_max_age must be between 0 and 3600 seconds."
  }
}

variable "access_log_bucket" {
  description = "Name of an existing bucket to receive S3 server access logs of the discovery bucket, or null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource created."
  type        = map(string)
  default     = {}
}
