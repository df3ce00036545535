output "oidc_provider_host" {
  description = "The IAM OIDC provider's URL without its scheme; also the prefix of its condition keys (HOST:sub, HOST:aud)."
  value       = local.host
}

output "roles" {
  description = "The roles of this account, keyed by ARN: name, path, max_session_duration and the targets that reach them."
  value = {
    for arn, r in local.roles : arn => {
      name                 = r.name
      path                 = r.path
      max_session_duration = r.max_session_duration
      targets              = r.targets
    }
  }
}

output "needs_oidc_provider" {
  description = "Whether any role of this account trusts stsbridge's issuer directly (a first hop)."
  value       = length(local.web_identity_roles) > 0
}

output "audiences" {
  description = "The audiences (client ids) the OIDC provider must list."
  value       = local.audiences
}

output "trust_policies" {
  description = "Trust policy JSON per role ARN."
  value       = local.trust_policies
}

output "permission_policies" {
  description = "Inline policy JSON per role ARN that must assume the next role of a chain (only roles with a next hop)."
  value       = local.permission_policies
}
