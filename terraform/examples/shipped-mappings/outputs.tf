output "targets" {
  description = "Each target's sub, aud and identity, as stsbridge presents them."
  value       = var.targets
}

output "aws_role_arns" {
  description = "Every role created, keyed by ARN."
  value = merge(
    module.aws_payments.role_arns,
    module.aws_audit.role_arns,
    module.aws_orders.role_arns,
    module.aws_partner_drop.role_arns,
    module.aws_sandbox.role_arns,
  )
}

output "gcp_principals" {
  description = "The principal:// member of each GCP target."
  value       = module.gcp.principals
}

output "azure_credentials" {
  description = "The federated identity credentials created."
  value       = module.azure.credentials
}
