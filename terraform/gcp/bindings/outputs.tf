output "pools" {
  description = "Workload identity pool ids of this project."
  value       = local.pools
}

output "providers" {
  description = "Pool providers of this project, keyed by resource name: pool_id, provider_id, allowed_audiences, attribute_condition."
  value = {
    for k, p in local.providers : k => {
      pool_id             = p.pool_id
      provider_id         = p.provider_id
      allowed_audiences   = sort(p.allowed_audiences)
      attribute_mapping   = { "google.subject" = "assertion.sub" }
      attribute_condition = local.attribute_conditions[k]
      targets             = p.targets
    }
  }
}

output "service_account_members" {
  description = "IAM members to add on service accounts: service_account (email), role, member."
  value       = local.service_account_members
}

output "principals" {
  description = "The principal:// member of every target of this project, keyed by target name."
  value       = { for t, b in local.bindings : t => b.principal }
}

output "direct_principals" {
  description = "The principal:// member of each target without a service account, to be granted resource access directly."
  value       = local.direct_principals
}
