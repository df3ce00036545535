output "credentials" {
  description = "The federated identity credentials of this tenant, keyed by name: client_id, issuer, subject, audiences and the targets that use them."
  value       = module.credentials.credentials
}

output "managed_identity_credential_ids" {
  description = "Resource ids of the credentials created on user-assigned managed identities."
  value       = { for name, c in azurerm_federated_identity_credential.this : name => c.id }
}

output "app_registration_credential_ids" {
  description = "Ids of the credentials created on app registrations."
  value       = { for name, c in azuread_application_federated_identity_credential.this : name => c.credential_id }
}
