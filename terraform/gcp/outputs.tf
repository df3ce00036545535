output "pool_names" {
  description = "Resource names of the workload identity pools created, keyed by pool id."
  value       = { for id, p in google_iam_workload_identity_pool.this : id => p.name }
}

output "provider_names" {
  description = "Resource names of the pool providers created (the audience stsbridge's targets name, without //iam.googleapis.com/)."
  value       = { for k, p in google_iam_workload_identity_pool_provider.this : k => p.name }
}

output "principals" {
  description = "The principal:// member of every target of this project, keyed by target name: grant it resource access where a target has no service account."
  value       = module.bindings.principals
}
