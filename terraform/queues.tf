# Three work queues, each with a dead-letter queue named "<queue>-dlq":
#   staged      producer -> promote      artifact.staged
#   accessed    producer -> metrics      cache.accessed (+ worker outcome events)
#   invalidate  admin    -> invalidate   cache.invalidate
# Delivery is at-least-once; handlers are idempotent (DESIGN.md invariant 4).
# A message received max_receive_count times without being deleted, or
# rejected by a worker, ends in the DLQ with the reason logged.

locals {
  queues = {
    staged = {
      name               = local.names.staged_queue
      visibility_timeout = var.queue_visibility_timeout_seconds.staged
    }
    accessed = {
      name               = local.names.accessed_queue
      visibility_timeout = var.queue_visibility_timeout_seconds.accessed
    }
    invalidate = {
      name               = local.names.invalidate_queue
      visibility_timeout = var.queue_visibility_timeout_seconds.invalidate
    }
  }

  # Every queue, main and dead-letter, keyed "staged", "staged-dlq", ...
  # (keys come from local.queues, so they are known at plan time)
  all_queue_arns = merge(
    { for k in keys(local.queues) : k => aws_sqs_queue.main[k].arn },
    { for k in keys(local.queues) : "${k}-dlq" => aws_sqs_queue.dlq[k].arn },
  )
  all_queue_urls = merge(
    { for k in keys(local.queues) : k => aws_sqs_queue.main[k].url },
    { for k in keys(local.queues) : "${k}-dlq" => aws_sqs_queue.dlq[k].url },
  )
}

resource "aws_sqs_queue" "dlq" {
  for_each = local.queues

  name                              = "${each.value.name}-dlq"
  message_retention_seconds         = 1209600 # 14 days, SQS's maximum: time to inspect and redrive
  visibility_timeout_seconds        = 300
  receive_wait_time_seconds         = 20
  sqs_managed_sse_enabled           = local.use_kms ? null : true
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = local.use_kms ? 300 : null
  tags                              = local.tags
}

resource "aws_sqs_queue" "main" {
  for_each = local.queues

  name                              = each.value.name
  visibility_timeout_seconds        = each.value.visibility_timeout
  message_retention_seconds         = var.queue_retention_seconds
  receive_wait_time_seconds         = 20 # long polling by default, for any client
  sqs_managed_sse_enabled           = local.use_kms ? null : true
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = local.use_kms ? 300 : null

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = local.tags
}

# Only its own source queue may dead-letter into a DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each = local.queues

  queue_url = aws_sqs_queue.dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main[each.key].arn]
  })
}

# The SDKs always use TLS; the queue policies make plain HTTP fail for
# anything else too. They grant nothing: access comes from IAM policies.
data "aws_iam_policy_document" "queue_tls_only" {
  for_each = local.all_queue_arns

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]

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

resource "aws_sqs_queue_policy" "tls_only" {
  for_each = local.all_queue_urls

  queue_url = each.value
  policy    = data.aws_iam_policy_document.queue_tls_only[each.key].json
}
