terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.81 made thumbprint_list optional on aws_iam_openid_connect_provider (IAM verifies the
      # issuer's certificate itself).
      version = ">= 5.81, < 7.0"
    }
  }
}
