# The AWS side of stsbridge's trust, for one account: the IAM OIDC provider for stsbridge's
# issuer, and each role a target names, with a trust policy that admits exactly the subjects and
# audience stsbridge's assertions carry (first hops) or exactly the previous role of a chain with
# its external id (cross-account hops). The documents come from ./policies, which the test suite
# evaluates offline.

module "policies" {
  source = "./policies"

  issuer_url = var.issuer_url
  account_id = var.account_id
  aws_roles  = var.aws_roles
}

# The provider of this instance must be for account_id: a plan against another account stops here.
data "aws_caller_identity" "current" {
  lifecycle {
    postcondition {
      condition     = self.account_id == var.account_id
      error_message = "This instance's aws provider is for account ${self.account_id}, not account_id ${var.account_id}."
    }
  }
}

data "aws_partition" "current" {}

locals {
  oidc_provider_arn = "arn:${data.aws_partition.current.partition}:iam::${var.account_id}:oidc-provider/${module.policies.oidc_provider_host}"

  attachments = merge([
    for arn, policies in var.managed_policy_arns : {
      for p in policies : "${arn} ${p}" => { role_arn = arn, policy_arn = p }
    } if contains(keys(module.policies.roles), arn)
  ]...)
}

resource "aws_iam_openid_connect_provider" "stsbridge" {
  count = var.create_oidc_provider && module.policies.needs_oidc_provider ? 1 : 0

  url             = var.issuer_url
  client_id_list  = module.policies.audiences
  thumbprint_list = length(var.thumbprint_list) > 0 ? var.thumbprint_list : null
  tags            = var.tags
}

resource "aws_iam_role" "this" {
  for_each = module.policies.roles

  name                 = each.value.name
  path                 = each.value.path
  description          = substr("stsbridge targets: ${join(", ", each.value.targets)}", 0, 1000)
  assume_role_policy   = module.policies.trust_policies[each.key]
  max_session_duration = each.value.max_session_duration
  permissions_boundary = var.permissions_boundary
  tags                 = var.tags

  # IAM refuses a trust policy whose federated principal does not exist yet.
  depends_on = [aws_iam_openid_connect_provider.stsbridge]
}

resource "aws_iam_role_policy" "next_hop" {
  for_each = module.policies.permission_policies

  name   = "stsbridge-next-hop"
  role   = aws_iam_role.this[each.key].name
  policy = each.value
}

resource "aws_iam_role_policy_attachment" "this" {
  for_each = local.attachments

  role       = aws_iam_role.this[each.value.role_arn].name
  policy_arn = each.value.policy_arn
}
