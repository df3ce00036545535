terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # jwks_json on OIDC pool providers.
      version = ">= 5.0, < 8.0"
    }
  }
}
