# Trust for the shipped mappings/ (loaded by examples/production/stsbridge.yaml): one aws module
# instance per account the targets' roles live in, one gcp instance for the pool's project, one
# azure instance for the tenant. Every instance takes the same variables file; each creates only
# what lives in its account, project or tenant.

locals {
  aws_accounts = {
    payments     = "111111111111" # ci-deploy.yaml, and the hub of cross-account.yaml
    audit        = "222222222222" # cross-account.yaml's chained hop
    orders       = "333333333333" # serverless.yaml
    partner_drop = "444444444444" # partner-globex.yaml
    sandbox      = "123456789012" # quickstart.yaml (dev mode's sandbox)
  }
}

provider "aws" {
  alias  = "payments"
  region = "us-east-1"
  assume_role {
    role_arn = "arn:aws:iam::${local.aws_accounts.payments}:role/${var.aws_admin_role_name}"
  }
}

provider "aws" {
  alias  = "audit"
  region = "us-east-1"
  assume_role {
    role_arn = "arn:aws:iam::${local.aws_accounts.audit}:role/${var.aws_admin_role_name}"
  }
}

provider "aws" {
  alias  = "orders"
  region = "us-east-1"
  assume_role {
    role_arn = "arn:aws:iam::${local.aws_accounts.orders}:role/${var.aws_admin_role_name}"
  }
}

provider "aws" {
  alias  = "partner_drop"
  region = "us-east-1"
  assume_role {
    role_arn = "arn:aws:iam::${local.aws_accounts.partner_drop}:role/${var.aws_admin_role_name}"
  }
}

provider "aws" {
  alias  = "sandbox"
  region = "us-east-1"
  assume_role {
    role_arn = "arn:aws:iam::${local.aws_accounts.sandbox}:role/${var.aws_admin_role_name}"
  }
}

module "aws_payments" {
  source    = "../../aws"
  providers = { aws = aws.payments }

  issuer_url = var.issuer_url
  account_id = local.aws_accounts.payments
  aws_roles  = var.aws_roles
}

module "aws_audit" {
  source    = "../../aws"
  providers = { aws = aws.audit }

  issuer_url = var.issuer_url
  account_id = local.aws_accounts.audit
  aws_roles  = var.aws_roles
  managed_policy_arns = {
    "arn:aws:iam::222222222222:role/audit-readonly" = ["arn:aws:iam::aws:policy/SecurityAudit"]
  }

  # IAM refuses a trust policy naming a role that does not exist yet: the hub first.
  depends_on = [module.aws_payments]
}

module "aws_orders" {
  source    = "../../aws"
  providers = { aws = aws.orders }

  issuer_url = var.issuer_url
  account_id = local.aws_accounts.orders
  aws_roles  = var.aws_roles
}

module "aws_partner_drop" {
  source    = "../../aws"
  providers = { aws = aws.partner_drop }

  issuer_url = var.issuer_url
  account_id = local.aws_accounts.partner_drop
  aws_roles  = var.aws_roles
}

module "aws_sandbox" {
  source    = "../../aws"
  providers = { aws = aws.sandbox }

  issuer_url = var.issuer_url
  account_id = local.aws_accounts.sandbox
  aws_roles  = var.aws_roles
}

provider "google" {
  project = var.gcp_project_id
}

module "gcp" {
  source = "../../gcp"

  issuer_url     = var.issuer_url
  project_id     = var.gcp_project_id
  project_number = "123456789012"
  gcp_providers  = var.gcp_providers
  gcp_bindings   = var.gcp_bindings
}

provider "azurerm" {
  features {}
  tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
}

provider "azuread" {
  tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
}

module "azure" {
  source = "../../azure"

  issuer_url        = var.issuer_url
  tenant_id         = "72f988bf-86f1-41af-91ab-2d7cd011db47"
  azure_credentials = var.azure_credentials
  identities = {
    "3f1e5a2c-0b6d-4c8e-9a7b-1d2e3f4a5b6c" = { user_assigned_identity_id = var.orders_fn_identity_id }
  }
}
