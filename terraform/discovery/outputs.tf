output "issuer_url" {
  description = "The issuer URL these documents are served at: stsbridge's issuer.url, and issuer_url of the aws, gcp and azure modules."
  value       = local.issuer_url
}

output "bucket_arn" {
  description = "ARN of the bucket."
  value       = aws_s3_bucket.this.arn
}

output "document_urls" {
  description = "URL of each document."
  value       = { for key in keys(local.documents) : key => "${local.issuer_url}/${key}" }
}
