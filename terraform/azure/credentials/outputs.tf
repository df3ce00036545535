output "credentials" {
  description = "Federated identity credentials of this tenant, keyed by name: client_id, issuer, subject, audiences, targets."
  value       = local.credentials
}

output "client_ids" {
  description = "The client ids whose identities receive credentials."
  value       = toset([for c in local.credentials : c.client_id])
}
