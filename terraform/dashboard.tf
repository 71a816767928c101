# The CloudWatch dashboard runcache-{stage}. docs/deploy.md ("Reading the
# dashboard") says what each widget shows and what to look for.
#
# Expressions used:
#   SEARCH('{NS,Repository} MetricName="X"', stat, period)   one line per repository
#   SUM(SEARCH(...))                                           all repositories together
#   SELECT AVG(X) FROM SCHEMA("NS", Repository)                Metrics Insights (last 2 weeks only)
# Every metric is queried with the one dimension set the workers emit it with
# (Repository, or Worker for WorkerErrors); tests/tests/terraform.rs checks.
# Labels like "$${PROP('Dim.Repository')}" are CloudWatch dynamic labels; the
# doubled $ keeps Terraform from interpolating them.

locals {
  repo_schema = "{${local.ns},Repository}"

  # SEARCH over the per-repository schema for one metric.
  search = { for m in [
    "CacheHit", "CacheMiss", "HitRate", "BytesRestored", "BytesSaved", "BuildTimeSaved",
    "ArtifactsPromoted", "ArtifactsDeduplicated", "UploadsRejected", "Evictions", "Invalidations",
    "StorageBytes", "ObjectCount", "AverageCacheAge",
  ] : m => "SEARCH('${local.repo_schema} MetricName=\"${m}\"', '%s', %d)" }

  repo_label = "$${PROP('Dim.Repository')}"

  queue_names = { for k, q in aws_sqs_queue.main : k => q.name }
  dlq_names   = { for k, q in aws_sqs_queue.dlq : k => q.name }

  widget_common = { region = local.region }

  dashboard_widgets = concat(
    [
      {
        type = "text", x = 0, y = 0, width = 24, height = 3
        properties = {
          markdown = join("\n", [
            "# runcache ${var.stage}",
            "Bucket `${aws_s3_bucket.artifacts.id}` · index `${aws_dynamodb_table.index.name}` · metrics `${local.ns}` · workers: ECS cluster `${local.cluster_name}`, logs `${local.worker_log_group}`.",
            "Hit rate and durations come from the workers (namespace `${local.ns}`); storage, queues and tasks from AWS's own metrics. Most-read index keys without any worker help: DynamoDB console → table `${aws_dynamodb_table.index.name}` → Monitor → Contributor Insights. Alarm runbook: docs/deploy.md.",
          ])
        }
      },

      # --- hit rate ----------------------------------------------------------
      {
        type = "metric", x = 0, y = 3, width = 12, height = 7
        properties = merge(local.widget_common, {
          title  = "Hit rate by repository (%)"
          view   = "timeSeries"
          period = 3600
          yAxis  = { left = { min = 0, max = 100, label = "%", showUnits = false } }
          metrics = [
            [{ id = "byrepo", expression = format(local.search["HitRate"], "Average", 3600), label = local.repo_label }],
          ]
        })
      },
      {
        type = "metric", x = 12, y = 3, width = 12, height = 7
        properties = merge(local.widget_common, {
          title  = "Restores: hits, misses and overall hit rate"
          view   = "timeSeries"
          period = 3600
          yAxis = {
            left  = { min = 0, label = "restores", showUnits = false }
            right = { min = 0, max = 100, label = "%", showUnits = false }
          }
          metrics = [
            [{ id = "hits", expression = "SUM(${format(local.search["CacheHit"], "Sum", 3600)})", label = "Hits" }],
            [{ id = "misses", expression = "SUM(${format(local.search["CacheMiss"], "Sum", 3600)})", label = "Misses" }],
            [{ id = "overall", expression = "IF(hits + misses > 0, 100 * hits / (hits + misses))", label = "Overall hit rate (%)", yAxis = "right" }],
          ]
        })
      },

      # --- storage -----------------------------------------------------------
      {
        type = "metric", x = 0, y = 10, width = 8, height = 6
        properties = merge(local.widget_common, {
          title   = "Storage growth: bucket size by storage class (S3, daily)"
          view    = "timeSeries"
          stacked = true
          period  = 86400
          metrics = [
            ["AWS/S3", "BucketSizeBytes", "BucketName", aws_s3_bucket.artifacts.id, "StorageType", "StandardStorage", { stat = "Average", label = "Standard" }],
            ["AWS/S3", "BucketSizeBytes", "BucketName", aws_s3_bucket.artifacts.id, "StorageType", "GlacierInstantRetrievalStorage", { stat = "Average", label = "Glacier Instant Retrieval" }],
            ["AWS/S3", "NumberOfObjects", "BucketName", aws_s3_bucket.artifacts.id, "StorageType", "AllStorageTypes", { stat = "Average", label = "Objects (all versions)", yAxis = "right" }],
          ]
        })
      },
      {
        type = "metric", x = 8, y = 10, width = 8, height = 6
        properties = merge(local.widget_common, {
          title  = "Cache storage growth as the workers count it (StorageBytes)"
          view   = "timeSeries"
          period = 3600
          # The workers publish it per repository only; the total is summed here.
          metrics = [
            [{ id = "storage", expression = format(local.search["StorageBytes"], "Maximum", 3600), label = local.repo_label }],
            [{ id = "storagetotal", expression = "SUM(storage)", label = "All repositories" }],
          ]
        })
      },
      {
        type = "metric", x = 16, y = 10, width = 8, height = 6
        properties = merge(local.widget_common, {
          title  = "Entries and their average age"
          view   = "timeSeries"
          period = 3600
          yAxis = {
            left  = { min = 0, label = "entries", showUnits = false }
            right = { min = 0, label = "days", showUnits = false }
          }
          metrics = [
            [{ id = "objects", expression = "SUM(${format(local.search["ObjectCount"], "Maximum", 3600)})", label = "Entries (all repositories)" }],
            [{ id = "agesec", expression = "AVG(${format(local.search["AverageCacheAge"], "Average", 3600)})", label = "Average age, seconds", visible = false }],
            [{ id = "agedays", expression = "agesec / 86400", label = "Average age (days)", yAxis = "right" }],
          ]
        })
      },

      # --- value delivered and cost of using the cache ------------------------
      {
        type = "metric", x = 0, y = 16, width = 8, height = 6
        properties = merge(local.widget_common, {
          title   = "Build time saved by hits vs rebuilding, by repository (hours per hour)"
          view    = "timeSeries"
          stacked = true
          period  = 3600
          metrics = [
            [{ id = "savedsec", expression = format(local.search["BuildTimeSaved"], "Sum", 3600), label = local.repo_label, visible = false }],
            [{ id = "savedh", expression = "savedsec / 3600", label = local.repo_label }],
          ]
        })
      },
      {
        type = "metric", x = 8, y = 16, width = 8, height = 6
        properties = merge(local.widget_common, {
          title  = "Restore duration (ms, all repositories)"
          view   = "timeSeries"
          period = 300
          # No worker publishes SaveDuration (a save is timed on the runner only).
          metrics = [
            [{ id = "restoreavg", expression = "SELECT AVG(RestoreDuration) FROM SCHEMA(\"${local.ns}\", Repository)", label = "Restore, average" }],
            [{ id = "restoremax", expression = "SELECT MAX(RestoreDuration) FROM SCHEMA(\"${local.ns}\", Repository)", label = "Restore, maximum" }],
          ]
        })
      },
      {
        type = "metric", x = 16, y = 16, width = 8, height = 6
        properties = merge(local.widget_common, {
          title  = "Bytes saved vs restored"
          view   = "timeSeries"
          period = 3600
          metrics = [
            [{ id = "bsaved", expression = "SUM(${format(local.search["BytesSaved"], "Sum", 3600)})", label = "Saved (uploaded)" }],
            [{ id = "brestored", expression = "SUM(${format(local.search["BytesRestored"], "Sum", 3600)})", label = "Restored (downloaded)" }],
          ]
        })
      },

      # --- the pipeline ------------------------------------------------------
      {
        type = "metric", x = 0, y = 22, width = 8, height = 6
        properties = merge(local.widget_common, {
          title  = "Promotion latency (ms) and oldest staged event (s)"
          view   = "timeSeries"
          period = 300
          yAxis = {
            left  = { min = 0, label = "ms", showUnits = false }
            right = { min = 0, label = "s", showUnits = false }
          }
          metrics = [
            [{ id = "platavg", expression = "SELECT AVG(PromotionLatency) FROM SCHEMA(\"${local.ns}\", Repository)", label = "Promotion latency, average" }],
            [{ id = "platmax", expression = "SELECT MAX(PromotionLatency) FROM SCHEMA(\"${local.ns}\", Repository)", label = "Promotion latency, maximum" }],
            ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", local.queue_names["staged"], { stat = "Maximum", label = "Oldest staged event", yAxis = "right" }],
          ]
        })
      },
      {
        type = "metric", x = 8, y = 22, width = 8, height = 6
        properties = merge(local.widget_common, {
          title  = "Pipeline outcomes"
          view   = "timeSeries"
          period = 300
          metrics = [
            [{ id = "promoted", expression = "SUM(${format(local.search["ArtifactsPromoted"], "Sum", 300)})", label = "Promoted" }],
            [{ id = "dedup", expression = "SUM(${format(local.search["ArtifactsDeduplicated"], "Sum", 300)})", label = "Deduplicated" }],
            [{ id = "rejected", expression = "SUM(${format(local.search["UploadsRejected"], "Sum", 300)})", label = "Rejected uploads" }],
            [{ id = "evicted", expression = "SUM(${format(local.search["Evictions"], "Sum", 300)})", label = "Evictions" }],
            [{ id = "invalidated", expression = "SUM(${format(local.search["Invalidations"], "Sum", 300)})", label = "Invalidations" }],
          ]
        })
      },
      {
        type = "metric", x = 16, y = 22, width = 8, height = 6
        properties = merge(local.widget_common, {
          title  = "Queue backlog (visible messages)"
          view   = "timeSeries"
          period = 60
          metrics = [for k in keys(local.queues) :
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.queue_names[k], { stat = "Maximum", label = k }]
          ]
        })
      },

      # --- health ------------------------------------------------------------
      {
        type = "metric", x = 0, y = 28, width = 8, height = 6
        properties = merge(local.widget_common, {
          title  = "Dead-letter queue depth"
          view   = "timeSeries"
          period = 60
          yAxis  = { left = { min = 0 } }
          metrics = [for k in keys(local.queues) :
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.dlq_names[k], { stat = "Maximum", label = "${k}-dlq" }]
          ]
        })
      },
      {
        type = "metric", x = 8, y = 28, width = 8, height = 6
        properties = merge(local.widget_common, {
          title  = "Worker errors by mode"
          view   = "timeSeries"
          period = 300
          metrics = [
            [{ id = "errors", expression = "SEARCH('{${local.ns},Worker} MetricName=\"WorkerErrors\"', 'Sum', 300)", label = "$${PROP('Dim.Worker')}" }],
          ]
        })
      },
      {
        type = "metric", x = 16, y = 28, width = 8, height = 6
        properties = merge(local.widget_common, {
          title  = "Running worker tasks"
          view   = "timeSeries"
          period = 60
          metrics = [for k in keys(local.worker_services) :
            ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", local.cluster_name, "ServiceName", k, { stat = "Maximum", label = k }]
          ]
        })
      },

      # --- most restored -----------------------------------------------------
      {
        type = "metric", x = 0, y = 34, width = 8, height = 7
        properties = merge(local.widget_common, {
          title  = "Most restored repositories (hits per hour, top 10)"
          view   = "timeSeries"
          period = 3600
          metrics = [
            [{ id = "tophits", expression = "SELECT SUM(CacheHit) FROM SCHEMA(\"${local.ns}\", Repository) GROUP BY Repository ORDER BY SUM() DESC LIMIT 10" }],
          ]
          legend = { position = "right" }
        })
      },
    ],

    # --- most restored entries ----------------------------------------------
    # Metrics rank repositories only (the widget above); entries (repository,
    # matched key) come from the metrics worker's logs: a Contributor Insights
    # rule (top 10 over time) and a Logs Insights table.
    var.most_accessed_rule.enabled ? [
      {
        type = "metric", x = 8, y = 34, width = 8, height = 7
        properties = merge(local.widget_common, {
          title  = "Most restored entries (Contributor Insights: repository, matched key)"
          view   = "timeSeries"
          period = 300
          insightRule = {
            ruleName            = aws_cloudwatch_contributor_insight_rule.most_restored[0].rule_name
            maxContributorCount = 10
            orderBy             = "Sum"
          }
          legend = { position = "right" }
        })
      },
    ] : [],
    [
      {
        type = "log", x = var.most_accessed_rule.enabled ? 16 : 8, y = 34, width = var.most_accessed_rule.enabled ? 8 : 16, height = 7
        properties = merge(local.widget_common, {
          title = "Top restored keys (Logs Insights over the dashboard's time range)"
          view  = "table"
          query = join(" | ", [
            "SOURCE '${local.worker_log_group}'",
            "filter `fields.event` = 'cache.accessed' and `fields.hit_kind` in ['exact', 'prefix']",
            "stats count(*) as restores by `fields.repository`, `fields.matched_key`",
            "sort restores desc",
            "limit 25",
          ])
        })
      },
      {
        type = "log", x = 0, y = 41, width = 24, height = 6
        properties = merge(local.widget_common, {
          title = "Recent worker errors (logs)"
          view  = "table"
          query = join(" | ", [
            "SOURCE '${local.worker_log_group}'",
            "fields @timestamp, @logStream, level, `fields.message` as message, @message",
            "filter level = 'ERROR' or level = 'WARN'",
            "sort @timestamp desc",
            "limit 50",
          ])
        })
      },
      {
        type = "alarm", x = 0, y = 47, width = 24, height = 4
        properties = merge(local.widget_common, {
          title  = "Alarms"
          alarms = local.paging_alarm_arns
        })
      },
    ],
  )
}

resource "aws_cloudwatch_dashboard" "runcache" {
  dashboard_name = local.dashboard_name
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}
