# The first six variables are what `stsbridge terraform-vars` prints; write them with
#   stsbridge terraform-vars --config ../../../examples/production/stsbridge.yaml > stsbridge.auto.tfvars.json
# They are passed unchanged to the modules, whose variables type and validate them.

variable "issuer_url" {
  description = "From `stsbridge terraform-vars`: stsbridge's issuer URL."
  type        = string
}

variable "targets" {
  description = "From `stsbridge terraform-vars`: each target's sub, aud and identity (shown as an output for review)."
  type        = any
}

variable "aws_roles" {
  description = "From `stsbridge terraform-vars`: IAM roles keyed by ARN (typed by the aws module)."
  type        = any
}

variable "gcp_providers" {
  description = "From `stsbridge terraform-vars`: pool providers (typed by the gcp module)."
  type        = any
}

variable "gcp_bindings" {
  description = "From `stsbridge terraform-vars`: per-target GCP bindings (typed by the gcp module)."
  type        = any
}

variable "azure_credentials" {
  description = "From `stsbridge terraform-vars`: federated identity credentials (typed by the azure module)."
  type        = any
}

# The rest describe the operator's own estate.

variable "aws_admin_role_name" {
  description = "A role Terraform assumes in every AWS account below to manage IAM (e.g. OrganizationAccountAccessRole)."
  type        = string
  default     = "OrganizationAccountAccessRole"
}

variable "gcp_project_id" {
  description = "Id of project 123456789012, which holds the stsbridge pool of mappings/serverless.yaml."
  type        = string
}

variable "orders_fn_identity_id" {
  description = "Resource id of the user-assigned identity whose client id mappings/serverless.yaml names for orders-fn-blob."
  type        = string
}
