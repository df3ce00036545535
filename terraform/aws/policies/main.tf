# Pure computation, no provider: the IAM documents for the roles of one account, from the
# variables `stsbridge terraform-vars` prints. The aws module applies them; the test suite
# evaluates this module offline to check them against the assertions stsbridge mints.

locals {
  # The OIDC provider's "host" is the issuer URL without its scheme: IAM names the provider and
  # the condition keys (HOST:sub, HOST:aud) after it.
  host = trimprefix(var.issuer_url, "https://")

  roles = { for arn, r in var.aws_roles : arn => r if r.account_id == var.account_id }

  web_identity_roles = { for arn, r in local.roles : arn => r if r.web_identity != null }

  # Statements per role: one for the exact subjects (StringEquals), one for the subjects rendered
  # per caller (StringLike), one per role that assumes it in a chain. (Lists are built with
  # filtered for-expressions rather than `cond ? [x] : []`, whose branches Terraform refuses as
  # tuples of different lengths.)
  statements = {
    for arn, r in local.roles : arn => concat(
      [
        for w in [r.web_identity] : {
          Sid       = "StsbridgeTargets"
          Effect    = "Allow"
          Principal = { Federated = "arn:${r.partition}:iam::${r.account_id}:oidc-provider/${local.host}" }
          Action    = local.web_identity_actions[arn]
          Condition = {
            StringEquals = {
              "${local.host}:aud" = w.audience
              "${local.host}:sub" = w.subjects
            }
          }
        } if w != null && length(try(w.subjects, [])) > 0
      ],
      [
        for w in [r.web_identity] : {
          Sid       = "StsbridgeTargetPatterns"
          Effect    = "Allow"
          Principal = { Federated = "arn:${r.partition}:iam::${r.account_id}:oidc-provider/${local.host}" }
          Action    = local.web_identity_actions[arn]
          Condition = {
            StringEquals = { "${local.host}:aud" = w.audience }
            StringLike   = { "${local.host}:sub" = w.subject_patterns }
          }
        } if w != null && length(try(w.subject_patterns, [])) > 0
      ],
      [
        for i, t in r.trusted_roles : merge(
          {
            Sid       = "StsbridgeChain${i}"
            Effect    = "Allow"
            Principal = { AWS = t.role_arn }
            Action = compact([
              "sts:AssumeRole",
              t.tag_session ? "sts:TagSession" : "",
              t.set_source_identity ? "sts:SetSourceIdentity" : "",
            ])
          },
          # The external id condition, when the hop presents one (exact, or a pattern).
          {
            for op, value in { StringEquals = t.external_id, StringLike = t.external_id_pattern } :
            "Condition" => { (op) = { "sts:ExternalId" = value } } if value != null
          },
        )
      ],
    )
  }

  web_identity_actions = {
    for arn, r in local.web_identity_roles : arn => compact([
      "sts:AssumeRoleWithWebIdentity",
      r.web_identity.tag_session ? "sts:TagSession" : "",
      r.web_identity.set_source_identity ? "sts:SetSourceIdentity" : "",
    ])
  }

  trust_policies = {
    for arn, s in local.statements : arn => jsonencode({
      Version   = "2012-10-17"
      Statement = s
    })
  }

  # What a role in a chain must be allowed to do to reach the next role.
  permission_policies = {
    for arn, r in local.roles : arn => jsonencode({
      Version = "2012-10-17"
      Statement = [
        for i, n in r.assumes : {
          Sid    = "StsbridgeNextHop${i}"
          Effect = "Allow"
          Action = compact([
            "sts:AssumeRole",
            n.tag_session ? "sts:TagSession" : "",
            n.set_source_identity ? "sts:SetSourceIdentity" : "",
          ])
          Resource = n.role_arn
        }
      ]
    }) if length(r.assumes) > 0
  }

  audiences = distinct([for r in local.web_identity_roles : r.web_identity.audience])
}
