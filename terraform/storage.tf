# The artifact bucket (DESIGN.md, "Storage layout"):
#   staging/{tier}/{upload-id}  runners upload here, under their trust tier or
#                               a lower one (untrusted, pull-request, branch,
#                               protected); unverified
#   artifacts/{sha256-hex}      the CAS; written only by workers
#   quarantine/{upload-id}      rejected uploads, kept for inspection
#   metadata/{sha256-hex}.json  provenance documents

resource "aws_s3_bucket" "artifacts" {
  #checkov:skip=CKV_AWS_144:Cross-region replication would double storage for a cache whose every entry can be rebuilt; durability comes from versioning plus the index.
  #checkov:skip=CKV2_AWS_62:runcache does not use S3 event notifications: the producer enqueues an artifact.staged event itself after its upload completes.
  #checkov:skip=CKV_AWS_18:Server access logging is opt-in through var.access_log_bucket (aws_s3_bucket_logging below); a logging bucket is account infrastructure this module does not own.
  bucket        = local.names.bucket
  force_destroy = var.force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    object_ownership = "BucketOwnerEnforced" # ACLs off: access is IAM and bucket policy only
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.sse_algorithm
      kms_master_key_id = local.kms_key_arn
    }
    # S3 Bucket Keys cut KMS requests (and their cost) by orders of magnitude
    # for the many small metadata objects and multipart parts.
    bucket_key_enabled = local.use_kms
  }
}

resource "aws_s3_bucket_logging" "artifacts" {
  count = var.access_log_bucket == null ? 0 : 1

  bucket        = aws_s3_bucket.artifacts.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${local.names.bucket}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  # Lifecycle rules on a versioned bucket act on current versions; the
  # noncurrent rule in each prefix then removes what they (or a worker's
  # DeleteObject) turned into a noncurrent version.
  rule {
    id     = "staging-expire"
    status = "Enabled"

    filter {
      prefix = "staging/"
    }

    expiration {
      days = var.lifecycle_days.staging_expiration
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.lifecycle_days.abort_incomplete_multi
    }
  }

  rule {
    id     = "quarantine-expire"
    status = "Enabled"

    filter {
      prefix = "quarantine/"
    }

    expiration {
      days = var.lifecycle_days.quarantine_expiration
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.lifecycle_days.abort_incomplete_multi
    }
  }

  # artifacts/ and metadata/ age the same way: Glacier Instant Retrieval keeps
  # millisecond first-byte latency, so an old entry restores as fast as a new
  # one, at a lower storage price (and a per-GB retrieval fee).
  dynamic "rule" {
    for_each = ["artifacts", "metadata"]

    content {
      id     = "${rule.value}-age"
      status = "Enabled"

      filter {
        prefix = "${rule.value}/"
      }

      transition {
        days          = var.lifecycle_days.artifacts_transition
        storage_class = "GLACIER_IR"
      }

      expiration {
        days = var.lifecycle_days.artifacts_expiration
      }

      noncurrent_version_expiration {
        noncurrent_days = var.lifecycle_days.noncurrent_expiration
      }

      abort_incomplete_multipart_upload {
        days_after_initiation = var.lifecycle_days.abort_incomplete_multi
      }
    }
  }

  # Anything else (nothing should be there), and the delete markers left once
  # the last noncurrent version of an object is gone.
  rule {
    id     = "bucket-hygiene"
    status = "Enabled"

    filter {}

    expiration {
      expired_object_delete_marker = true
    }

    noncurrent_version_expiration {
      noncurrent_days = var.lifecycle_days.noncurrent_expiration
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.lifecycle_days.abort_incomplete_multi
    }
  }

  # A lifecycle configuration on a bucket whose versioning is still being
  # enabled can be rejected; order them.
  depends_on = [aws_s3_bucket_versioning.artifacts]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]

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

  statement {
    sid       = "DenyOutdatedTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }

  # Invariant 1 and 2 as a resource policy: whatever else a principal's own
  # IAM policies allow, only the workers write or delete outside staging/.
  dynamic "statement" {
    for_each = var.enforce_worker_only_writes ? [1] : []

    content {
      sid    = "OnlyWorkersWriteOutsideStaging"
      effect = "Deny"
      actions = [
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
      ]
      resources = [
        "${aws_s3_bucket.artifacts.arn}/artifacts/*",
        "${aws_s3_bucket.artifacts.arn}/metadata/*",
        "${aws_s3_bucket.artifacts.arn}/quarantine/*",
      ]

      principals {
        type        = "*"
        identifiers = ["*"]
      }

      condition {
        test     = "ArnNotEquals"
        variable = "aws:PrincipalArn"
        values   = concat([aws_iam_role.worker_task.arn], var.cas_writer_principal_arns)
      }
    }
  }

  # The staging tiers as a resource policy: only runner roles of tier t or
  # above (iam.tf, runner_role_tiers) put under staging/{t}/, whatever else a
  # principal's own IAM policies allow (a broad existing runner role must not
  # reach a higher tier's prefix: promote trusts the tier in the key).
  dynamic "statement" {
    for_each = var.enforce_staging_tiers ? local.runner_tiers : []

    content {
      sid    = "StageUnder${replace(title(statement.value), "-", "")}OnlyFromThatTierOrAbove"
      effect = "Deny"
      actions = [
        "s3:PutObject",
        "s3:AbortMultipartUpload",
      ]
      resources = ["${aws_s3_bucket.artifacts.arn}/staging/${statement.value}/*"]

      principals {
        type        = "*"
        identifiers = ["*"]
      }

      condition {
        test     = "ArnNotLike"
        variable = "aws:PrincipalArn"
        values = concat(
          [aws_iam_role.worker_task.arn],
          var.cas_writer_principal_arns,
          local.staging_writer_arn_patterns[statement.value],
        )
      }
    }
  }
}

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.bucket.json

  # PutBucketPolicy fails while Block Public Access is still being applied.
  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}
