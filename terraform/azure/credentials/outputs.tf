output "credentials" {
  description = "Federated identity credentials of this tenant, keyed by name: client_id, issuer, subject, audiences, targets."
  value       = local.credentials
}
