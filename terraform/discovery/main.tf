# Static hosting of stsbridge's discovery document and JWKS, for a bridge the clouds cannot reach:
# an S3 bucket whose two documents (and nothing else) anyone may read over HTTPS, as AWS IAM,
# Google and Entra ID fetch them anonymously. The files are those `stsbridge issuer export`
# writes, uploaded byte for byte; export and apply again after every `stsbridge keys rotate`.

locals {
  documents = {
    ".well-known/openid-configuration" = "${var.export_dir}/.well-known/openid-configuration"
    ".well-known/jwks.json"            = "${var.export_dir}/.well-known/jwks.json"
  }

  issuer_url = "https://${aws_s3_bucket.this.bucket_regional_domain_name}"
  discovery  = jsondecode(file(local.documents[".well-known/openid-configuration"]))
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_145:The documents are read anonymously by the clouds; S3 refuses anonymous reads of SSE-KMS objects, so the bucket uses SSE-S3 (AES256).
  #checkov:skip=CKV_AWS_144:Two public, re-exportable documents; cross-region replication adds cost and a second public copy, not safety.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events for two documents that change only on key rotation.
  #checkov:skip=CKV2_AWS_6:The bucket has a public access block (aws_s3_bucket_public_access_block.this) that blocks ACLs; it allows the one bucket policy that makes the two documents readable, which is this bucket's purpose.
  #checkov:skip=CKV_AWS_18:Access logging goes to a bucket of the operator's choice (access_log_bucket) and is off when it is null.
  bucket = var.bucket_name
  tags   = var.tags
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  #checkov:skip=CKV_AWS_54:The bucket policy must grant anonymous s3:GetObject on the two documents; it grants nothing else.
  #checkov:skip=CKV_AWS_56:Same: the public policy is the point of the bucket, and it is limited to two object keys.
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  ignore_public_acls      = true
  block_public_policy     = false
  restrict_public_buckets = false
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "expire-old-versions"
    status = "Enabled"

    filter {}

    # Old JWKS versions are only history once the keys in them have expired.
    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_logging" "this" {
  count = var.access_log_bucket == null ? 0 : 1

  bucket        = aws_s3_bucket.this.id
  target_bucket = var.access_log_bucket
  target_prefix = "${var.bucket_name}/"
}

data "aws_iam_policy_document" "public_read" {
  statement {
    sid       = "ReadDiscoveryDocuments"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = [for key in keys(local.documents) : "${aws_s3_bucket.this.arn}/${key}"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }

  statement {
    sid       = "HttpsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.public_read.json

  # A public policy is refused until the public access block allows it.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_object" "documents" {
  for_each = local.documents

  bucket        = aws_s3_bucket.this.id
  key           = each.key
  source        = each.value
  etag          = filemd5(each.value)
  content_type  = "application/json"
  cache_control = "public, max-age=${var.cache_max_age}"
  tags          = var.tags

  lifecycle {
    precondition {
      condition     = local.discovery.issuer == local.issuer_url
      error_message = "The exported discovery document says issuer ${local.discovery.issuer}, but this bucket serves ${local.issuer_url}: set stsbridge's issuer.url to ${local.issuer_url} and export again."
    }

    precondition {
      condition     = local.discovery.jwks_uri == "${local.issuer_url}/.well-known/jwks.json"
      error_message = "The exported discovery document's jwks_uri is ${local.discovery.jwks_uri}, not ${local.issuer_url}/.well-known/jwks.json: export again with issuer.url set to ${local.issuer_url}."
    }
  }
}
