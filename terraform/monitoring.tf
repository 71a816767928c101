# Worker logs, the "most restored" Contributor Insights rule, and the alarms
# an operator is paged for (docs/deploy.md explains each one).
#
# Metric contract (what the workers emit: workers/src/metrics.rs and
# service.rs; names in infra/src/metrics.rs): namespace Runcache/{stage};
# CacheHit, CacheMiss, HitRate (Percent), BytesRestored, BytesSaved,
# RestoreDuration (Milliseconds), BuildTimeSaved (Seconds), PromotionLatency
# (Milliseconds), ArtifactsPromoted, ArtifactsDeduplicated, UploadsRejected,
# StorageBytes (Bytes), ObjectCount, AverageCacheAge (Seconds), Evictions,
# Invalidations, each only with the single dimension Repository;
# WorkerErrors only with the single dimension Worker =
# promote|metrics|invalidate|sweep. No totals without dimensions: sums are
# taken here. SaveDuration is a reserved name no worker publishes.

resource "aws_cloudwatch_log_group" "workers" {
  #checkov:skip=CKV_AWS_338:Worker logs are operational (per-message traces), not an audit trail: audit records live in the index table. Retention is var.log_retention_days (default 30) to bound cost.
  name              = local.worker_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_cloudwatch_contributor_insight_rule" "most_restored" {
  count = var.most_accessed_rule.enabled ? 1 : 0

  rule_name  = "runcache-${var.stage}-most-restored"
  rule_state = "ENABLED"
  rule_definition = jsonencode({
    Schema        = { Name = "CloudWatchLogRule", Version = 1 }
    LogGroupNames = [aws_cloudwatch_log_group.workers.name]
    LogFormat     = "JSON"
    Contribution = {
      Keys    = var.most_accessed_rule.keys
      Filters = [for f in var.most_accessed_rule.filters : { Match = f.match, In = f.values }]
    }
    AggregateOn = "Count"
  })
}

locals {
  alarm_actions = var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn]
  ns            = local.names.metrics_namespace
  alarm_prefix  = "runcache-${var.stage}"
}

# Hit rate is the product: a falling one means keys changed shape (lockfile
# churn, toolchain drift), entries were evicted or invalidated, or restores
# fail. A Metrics Insights query averages HitRate over every repository (an
# alarm cannot use SEARCH); such alarms may look back at most 3 hours.
resource "aws_cloudwatch_metric_alarm" "low_hit_rate" {
  alarm_name          = "${local.alarm_prefix}-low-hit-rate"
  alarm_description   = "Average cache hit rate across repositories below ${var.alarm_thresholds.low_hit_rate_percent}% for 2 hours. See docs/deploy.md#low-hit-rate."
  evaluation_periods  = 2
  threshold           = var.alarm_thresholds.low_hit_rate_percent
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "notBreaching" # no restores is not a low hit rate
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "hitrate"
    expression  = "SELECT AVG(HitRate) FROM SCHEMA(\"${local.ns}\", Repository)"
    label       = "Average HitRate (%)"
    period      = 3600
    return_data = true
  }

  tags = local.tags
}

# Storage from S3's own daily metrics, independent of the workers: the bucket
# in every storage class, noncurrent versions included (they are billed).
resource "aws_cloudwatch_metric_alarm" "storage_growth" {
  alarm_name          = "${local.alarm_prefix}-storage-growth"
  alarm_description   = "Artifact bucket holds more than ${var.alarm_thresholds.storage_bytes} bytes. See docs/deploy.md#storage-growth."
  evaluation_periods  = 2 # S3 publishes once a day, late: look at two days
  datapoints_to_alarm = 1
  threshold           = var.alarm_thresholds.storage_bytes
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id = "standard"

    metric {
      namespace   = "AWS/S3"
      metric_name = "BucketSizeBytes"
      dimensions  = { BucketName = aws_s3_bucket.artifacts.id, StorageType = "StandardStorage" }
      stat        = "Average"
      period      = 86400
    }
  }

  metric_query {
    id = "glacierir"

    metric {
      namespace   = "AWS/S3"
      metric_name = "BucketSizeBytes"
      dimensions  = { BucketName = aws_s3_bucket.artifacts.id, StorageType = "GlacierInstantRetrievalStorage" }
      stat        = "Average"
      period      = 86400
    }
  }

  metric_query {
    id          = "total"
    expression  = "FILL(standard, 0) + FILL(glacierir, 0)"
    label       = "Bucket size (bytes)"
    return_data = true
  }

  tags = local.tags
}

# A message in a DLQ is an event no worker could handle max_receive_count
# times, or one a worker rejected as malformed.
resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  for_each = local.queues

  alarm_name          = "${local.alarm_prefix}-${each.key}-dlq-not-empty"
  alarm_description   = "${aws_sqs_queue.dlq[each.key].name} has messages. See docs/deploy.md#dlq-not-empty."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq[each.key].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "worker_errors" {
  for_each = toset(["promote", "metrics", "invalidate", "sweep"])

  alarm_name          = "${local.alarm_prefix}-${each.key}-worker-errors"
  alarm_description   = "${each.key} worker reported at least ${var.alarm_thresholds.worker_errors} errors in 15 minutes. See docs/deploy.md#worker-errors."
  namespace           = local.ns
  metric_name         = "WorkerErrors"
  dimensions          = { Worker = each.key }
  statistic           = "Sum"
  period              = 900
  evaluation_periods  = 1
  threshold           = var.alarm_thresholds.worker_errors
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

# Saves are not being promoted: no promote worker running (image, IAM,
# network), or promotions failing and retrying.
resource "aws_cloudwatch_metric_alarm" "promotion_stalled" {
  alarm_name          = "${local.alarm_prefix}-promotion-stalled"
  alarm_description   = "Oldest staged event is older than ${var.alarm_thresholds.staged_age_seconds} s: saves are not being promoted. See docs/deploy.md#promotion-stalled."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.main["staged"].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = var.alarm_thresholds.staged_age_seconds
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

# A runner uploaded bytes whose SHA-256 is not the one it claimed: a broken
# client, a truncated upload, or someone trying to poison the cache.
resource "aws_cloudwatch_metric_alarm" "uploads_rejected" {
  alarm_name          = "${local.alarm_prefix}-uploads-rejected"
  alarm_description   = "Staged uploads were rejected (hash mismatch or invalid). See docs/deploy.md#uploads-rejected."
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "rejected"
    expression  = "SELECT SUM(UploadsRejected) FROM SCHEMA(\"${local.ns}\", Repository)"
    label       = "Uploads rejected"
    period      = 300
    return_data = true
  }

  tags = local.tags
}

locals {
  paging_alarm_arns = concat(
    [
      aws_cloudwatch_metric_alarm.low_hit_rate.arn,
      aws_cloudwatch_metric_alarm.storage_growth.arn,
      aws_cloudwatch_metric_alarm.promotion_stalled.arn,
      aws_cloudwatch_metric_alarm.uploads_rejected.arn,
    ],
    [for k in keys(local.queues) : aws_cloudwatch_metric_alarm.dlq_not_empty[k].arn],
    [for k in ["promote", "metrics", "invalidate", "sweep"] : aws_cloudwatch_metric_alarm.worker_errors[k].arn],
  )
}
