# The offline evaluation root of tests/terraform/evaluate.py: the provider-free halves of the aws,
# gcp and azure modules (the documents the modules apply), for every account, project and tenant
# in a `stsbridge terraform-vars` file. Real Terraform evaluates them, so the variables file is
# type-checked against the modules' own variable types and validations.

variable "issuer_url" {
  description = "From `stsbridge terraform-vars`."
  type        = string
}

variable "targets" {
  description = "From `stsbridge terraform-vars` (not used here; declared so the file loads without warnings)."
  type        = any
}

variable "aws_roles" {
  description = "From `stsbridge terraform-vars`; typed by aws/policies."
  type        = any
}

variable "gcp_providers" {
  description = "From `stsbridge terraform-vars`; typed by gcp/bindings."
  type        = any
}

variable "gcp_bindings" {
  description = "From `stsbridge terraform-vars`; typed by gcp/bindings."
  type        = any
}

variable "azure_credentials" {
  description = "From `stsbridge terraform-vars`; typed by azure/credentials."
  type        = any
}

module "aws" {
  source   = "../../../terraform/aws/policies"
  for_each = toset([for r in var.aws_roles : r.account_id])

  issuer_url = var.issuer_url
  account_id = each.key
  aws_roles  = var.aws_roles
}

module "gcp" {
  source   = "../../../terraform/gcp/bindings"
  for_each = toset([for p in var.gcp_providers : p.project_number])

  project_number = each.key
  gcp_providers  = var.gcp_providers
  gcp_bindings   = var.gcp_bindings
}

module "azure" {
  source   = "../../../terraform/azure/credentials"
  for_each = toset([for c in var.azure_credentials : c.tenant_id])

  issuer_url        = var.issuer_url
  tenant_id         = each.key
  azure_credentials = var.azure_credentials
}

output "aws" {
  description = "Per account: oidc_provider_host, roles, audiences, trust_policies, permission_policies."
  value       = module.aws
}

output "gcp" {
  description = "Per project number: pools, providers, service_account_members, principals."
  value       = module.gcp
}

output "azure" {
  description = "Per tenant: credentials."
  value       = module.azure
}
