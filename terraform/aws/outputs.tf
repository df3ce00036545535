output "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider for stsbridge's issuer in this account (created here, or expected to exist when create_oidc_provider is false)."
  value       = module.policies.needs_oidc_provider ? local.oidc_provider_arn : null
}

output "role_arns" {
  description = "The roles created in this account, keyed by the ARN stsbridge's mappings name (equal to the created role's ARN)."
  value       = { for arn, role in aws_iam_role.this : arn => role.arn }
}

output "trust_policies" {
  description = "The trust policy of each role created, keyed by role ARN."
  value       = module.policies.trust_policies
}
