# The cache index and the provenance table.
#
# Index key design: pk = "{repository}#{gitRef}#{cacheVersion}" names one
# scope at one version, sk = the cache key. So the restore search never scans:
#   exact key              -> GetItem(pk, sk)
#   key prefix in a scope  -> Query(pk = :scope, begins_with(sk, :prefix)),
#                             newest createdAt wins among the (few) matches
# and each scope in the search order (ref, PR base, default branch) is one
# more GetItem/Query. Audit records share the table under
# pk = "audit#{repository}" (sk chosen by the workers, e.g. time#id).
# The GSIs serve admin selection and invalidation by repository/toolchain
# and by lockfile hash; they are sparse, so items without those attributes
# (audit records) stay out of them.

resource "aws_dynamodb_table" "index" {
  name                        = local.names.index_table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  attribute {
    name = "repository"
    type = "S"
  }

  attribute {
    name = "toolchain"
    type = "S"
  }

  attribute {
    name = "lockfileHash"
    type = "S"
  }

  global_secondary_index {
    name            = "repository-toolchain-index"
    hash_key        = "repository"
    range_key       = "toolchain"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "lockfileHash-index"
    hash_key        = "lockfileHash"
    projection_type = "ALL"
  }

  # Epoch seconds; DynamoDB deletes expired items within a few days, so
  # readers must also ignore items whose ttl has passed.
  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn # null: the AWS managed key aws/dynamodb
  }

  tags = local.tags
}

resource "aws_dynamodb_table" "provenance" {
  name                        = local.names.provenance_table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "contentHash"
  range_key                   = "uploadId"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "contentHash"
    type = "S"
  }

  attribute {
    name = "uploadId"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }

  tags = local.tags
}

resource "aws_dynamodb_contributor_insights" "index" {
  count = var.index_contributor_insights ? 1 : 0

  table_name = aws_dynamodb_table.index.name
}

# Same guarantee as the bucket policy's OnlyWorkersWriteOutsideStaging: no
# principal but the workers (and declared break-glass principals) writes
# items, whatever its own IAM policies say.
locals {
  table_arns = {
    index      = aws_dynamodb_table.index.arn
    provenance = aws_dynamodb_table.provenance.arn
  }
}

data "aws_iam_policy_document" "table_writes" {
  for_each = var.enforce_worker_only_writes ? local.table_arns : {}

  statement {
    sid    = "OnlyWorkersWriteItems"
    effect = "Deny"
    actions = [
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:PartiQLInsert",
      "dynamodb:PartiQLUpdate",
      "dynamodb:PartiQLDelete",
    ]
    resources = [each.value]

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

resource "aws_dynamodb_resource_policy" "table_writes" {
  for_each = var.enforce_worker_only_writes ? local.table_arns : {}

  resource_arn = each.value
  policy       = data.aws_iam_policy_document.table_writes[each.key].json
}
