terraform {
  required_version = ">= 1.5"

  required_providers {
    # Federated credentials on user-assigned identities (user_assigned_identity_id, as of 5.0).
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 5.0, < 6.0"
    }
    # Federated credentials on app registrations, found by client id.
    azuread = {
      source  = "hashicorp/azuread"
      version = ">= 3.0, < 4.0"
    }
  }
}
