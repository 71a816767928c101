# The workers: one image, `runcache-worker <mode>`, on ECS Fargate.
#
# Why Fargate and not Lambda: the workers are long-polling SQS consumers that
# extend a message's visibility while they stream and hash objects of any
# size (Lambda stops at 15 minutes and 10 GiB of /tmp, and its SQS event
# source would replace the worker's own consumer loop, batching and
# per-message outcomes). Fargate runs the same binary as a developer does,
# with no servers to patch.
#
# Why one service per mode and not one `all` service: each mode scales on its
# own queue (promote on staged-queue depth, metrics on accessed, invalidate
# on invalidate), has its own size (promote hashes and copies gigabytes,
# metrics only aggregates), and fails alone (a crash-looping invalidate
# handler does not stop promotion). Log streams and the WorkerErrors
# dimension line up with services. sweep must not run in N replicas at once,
# so it is a scheduled one-shot task (`sweep --once`), not a service.

locals {
  # The configuration contract: exactly the variables runcache reads
  # (outputs.tf hands the same block to runners, with RUNCACHE_MAX_TRUST).
  runcache_env = {
    RUNCACHE_BACKEND           = "aws"
    RUNCACHE_STAGE             = var.stage
    AWS_REGION                 = local.region
    RUNCACHE_BUCKET            = aws_s3_bucket.artifacts.id
    RUNCACHE_INDEX_TABLE       = aws_dynamodb_table.index.name
    RUNCACHE_PROVENANCE_TABLE  = aws_dynamodb_table.provenance.name
    RUNCACHE_STAGED_QUEUE      = aws_sqs_queue.main["staged"].name
    RUNCACHE_ACCESSED_QUEUE    = aws_sqs_queue.main["accessed"].name
    RUNCACHE_INVALIDATE_QUEUE  = aws_sqs_queue.main["invalidate"].name
    RUNCACHE_METRICS_NAMESPACE = local.names.metrics_namespace
  }

  # Runners also get RUNCACHE_MAX_TRUST, their role's tier: the producer
  # stages under min(trust of the job, RUNCACHE_MAX_TRUST), so an honest
  # runner never asks for a staging/ prefix its credentials cannot write.
  # Workers have no tier and do not get it.
  runner_env_by_tier = {
    for tier in local.runner_tiers : tier => merge(local.runcache_env, { RUNCACHE_MAX_TRUST = tier })
  }
  runner_env_files = {
    for tier, env in local.runner_env_by_tier : tier => join("", [for k in sort(keys(env)) : "${k}=${env[k]}\n"])
  }

  # The root filesystem is read-only; scratch space is the /tmp volume.
  worker_env = merge(var.worker_environment, { TMPDIR = "/tmp" }, local.runcache_env)

  worker_modes = {
    promote    = { command = ["promote"], cpu = var.workers.promote.cpu, memory = var.workers.promote.memory }
    metrics    = { command = ["metrics"], cpu = var.workers.metrics.cpu, memory = var.workers.metrics.memory }
    invalidate = { command = ["invalidate"], cpu = var.workers.invalidate.cpu, memory = var.workers.invalidate.memory }
    sweep      = { command = ["sweep", "--once"], cpu = var.workers.sweep.cpu, memory = var.workers.sweep.memory }
  }

  # Long-running services and the queue each one drains.
  worker_services = {
    promote    = merge(var.workers.promote, { queue = "staged" })
    metrics    = merge(var.workers.metrics, { queue = "accessed" })
    invalidate = merge(var.workers.invalidate, { queue = "invalidate" })
  }

  worker_security_group_ids = concat([aws_security_group.workers.id], var.additional_security_group_ids)
}

resource "aws_ecs_cluster" "workers" {
  name = local.cluster_name

  # Task-level CPU, memory and RunningTaskCount for the dashboard.
  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

resource "aws_security_group" "workers" {
  name        = "${local.prefix}-workers-${var.stage}"
  description = "runcache ${var.stage} workers: no inbound, HTTPS out to AWS APIs and the image registry"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to S3, DynamoDB, SQS, CloudWatch, Logs and ECR (or their VPC endpoints)"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = var.worker_egress_cidr_blocks
  }

  tags = local.tags
}

resource "aws_ecs_task_definition" "worker" {
  for_each = local.worker_modes

  family                   = "${local.prefix}-${each.key}-${var.stage}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.worker_execution.arn
  task_role_arn            = aws_iam_role.worker_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.worker_cpu_architecture
  }

  volume {
    name = "tmp"
  }

  dynamic "ephemeral_storage" {
    for_each = var.worker_ephemeral_storage_gib == null ? [] : [var.worker_ephemeral_storage_gib]

    content {
      size_in_gib = ephemeral_storage.value
    }
  }

  container_definitions = jsonencode([
    {
      name        = "runcache-worker"
      image       = var.worker_image
      essential   = true
      entryPoint  = var.worker_entrypoint
      command     = each.value.command
      environment = [for k in sort(keys(local.worker_env)) : { name = k, value = local.worker_env[k] }]

      readonlyRootFilesystem = true
      mountPoints = [
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]

      # SIGTERM first: the worker stops intake and finishes in-flight
      # messages; 120 s is Fargate's maximum grace period. Whatever is cut
      # off reappears after its visibility timeout (handlers are idempotent).
      stopTimeout     = 120
      linuxParameters = { initProcessEnabled = true }

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          "awslogs-group"         = aws_cloudwatch_log_group.workers.name
          "awslogs-region"        = local.region
          "awslogs-stream-prefix" = each.key
          # Never block the worker on log delivery.
          "mode"            = "non-blocking"
          "max-buffer-size" = "4m"
        }
      }
    },
  ])

  tags = local.tags
}

resource "aws_ecs_service" "worker" {
  for_each = local.worker_services

  name                    = each.key
  cluster                 = aws_ecs_cluster.workers.id
  task_definition         = aws_ecs_task_definition.worker[each.key].arn
  desired_count           = each.value.min_count
  launch_type             = "FARGATE"
  platform_version        = "LATEST"
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"

  # Start the new revision before stopping the old: consumers of the same
  # queue can overlap safely.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = local.worker_security_group_ids
    assign_public_ip = var.assign_public_ip
  }

  # Autoscaling owns the task count after creation.
  lifecycle {
    ignore_changes = [desired_count]
  }

  tags = local.tags
}

# --- autoscaling on queue depth ------------------------------------------------

resource "aws_appautoscaling_target" "worker" {
  for_each = local.worker_services

  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.workers.name}/${aws_ecs_service.worker[each.key].name}"
  min_capacity       = each.value.min_count
  max_capacity       = each.value.max_count
}

# Breach value = visible messages - scale_out_backlog: +1 task below ten
# times the backlog, +3 above. The alarm stays in ALARM while the backlog
# lasts, so the policy fires again after each cooldown.
resource "aws_appautoscaling_policy" "scale_out" {
  for_each = local.worker_services

  name               = "${each.key}-backlog-scale-out"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.worker[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.worker[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.worker[each.key].scalable_dimension

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 60
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = 9 * each.value.scale_out_backlog
      scaling_adjustment          = 1
    }

    step_adjustment {
      metric_interval_lower_bound = 9 * each.value.scale_out_backlog
      scaling_adjustment          = 3
    }
  }
}

resource "aws_appautoscaling_policy" "scale_in" {
  for_each = local.worker_services

  name               = "${each.key}-idle-scale-in"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.worker[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.worker[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.worker[each.key].scalable_dimension

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 300
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_upper_bound = 0
      scaling_adjustment          = -1
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "backlog" {
  for_each = local.worker_services

  alarm_name          = "runcache-${var.stage}-scaling-${each.key}-backlog"
  alarm_description   = "Autoscaling (not paging): ${each.value.queue} queue has at least ${each.value.scale_out_backlog} visible messages; add ${each.key} workers."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.main[each.value.queue].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = each.value.scale_out_backlog
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.scale_out[each.key].arn]
  tags                = local.tags
}

# Idle means nothing visible and nothing in flight, so scaling in never
# interrupts a message being worked on (and if it did, the message would
# come back after its visibility timeout). An idle queue stops publishing
# metrics after 6 hours: missing data counts as idle.
resource "aws_cloudwatch_metric_alarm" "idle" {
  for_each = local.worker_services

  alarm_name          = "runcache-${var.stage}-scaling-${each.key}-idle"
  alarm_description   = "Autoscaling (not paging): ${each.value.queue} queue empty for 10 minutes; remove a ${each.key} worker down to the minimum."
  evaluation_periods  = 10
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_appautoscaling_policy.scale_in[each.key].arn]

  metric_query {
    id = "visible"

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = aws_sqs_queue.main[each.value.queue].name }
      stat        = "Maximum"
      period      = 60
    }
  }

  metric_query {
    id = "inflight"

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesNotVisible"
      dimensions  = { QueueName = aws_sqs_queue.main[each.value.queue].name }
      stat        = "Maximum"
      period      = 60
    }
  }

  metric_query {
    id          = "outstanding"
    expression  = "visible + inflight"
    label       = "Messages visible or in flight"
    return_data = true
  }

  tags = local.tags
}

# --- sweep ---------------------------------------------------------------------

resource "aws_scheduler_schedule" "sweep" {
  #checkov:skip=CKV_AWS_297:A Scheduler CMK only encrypts the target input payload, and this schedule has none (the sweep command lives in its task definition); the AWS owned key covers the rest.
  name                = "${local.prefix}-sweep-${var.stage}"
  description         = "runcache ${var.stage}: runcache-worker sweep --once (TTL, per-scope quota LRU, unreferenced blobs)"
  schedule_expression = var.sweep_schedule

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_ecs_cluster.workers.arn
    role_arn = aws_iam_role.sweep_scheduler.arn

    ecs_parameters {
      task_definition_arn = aws_ecs_task_definition.worker["sweep"].arn
      launch_type         = "FARGATE"
      task_count          = 1

      network_configuration {
        subnets          = var.subnet_ids
        security_groups  = local.worker_security_group_ids
        assign_public_ip = var.assign_public_ip
      }
    }

    # A missed sweep is harmless (the next one catches up); don't pile up.
    retry_policy {
      maximum_event_age_in_seconds = 3600
      maximum_retry_attempts       = 3
    }
  }
}
