# runcache on AWS: names, shared facts and the KMS key.
#
# File map:
#   main.tf        names, account facts, KMS key
#   storage.tf     artifact bucket (versioning, encryption, lifecycle, policy)
#   tables.tf      cache index and provenance tables
#   queues.tf      staged / accessed / invalidate queues and their DLQs
#   iam.tf         runner, worker, admin and server policies (from policies/*.json.tftpl) and roles
#   workers.tf     ECS Fargate cluster, task definitions, services, autoscaling, sweep schedule
#   serve.tf       optional `runcache serve`: internal ALB, task definition and service
#   monitoring.tf  log group, Contributor Insights, alarms
#   dashboard.tf   the CloudWatch dashboard
#   outputs.tf     the runner env block and everything else a caller wires up

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

# Service principal names differ between partitions (amazonaws.com vs
# amazonaws.com.cn for some services); let the provider compose them.
data "aws_service_principal" "this" {
  for_each = toset(["ec2", "ecs-tasks", "scheduler", "logs"])

  service_name = each.key
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix
  # The region's name: `id` in every provider release the module allows
  # (versions.tf). `region` exists only from 6.0, and `name` is deprecated
  # there.
  region = data.aws_region.current.id
  spn    = { for k, p in data.aws_service_principal.this : k => p.name }

  # The names runcache derives from the stage (DESIGN.md, "Configuration
  # contract"); each may be overridden, and the outputs hand the result back.
  names = {
    bucket            = coalesce(var.name_overrides.bucket, "self-runners-artifacts-${var.stage}")
    index_table       = coalesce(var.name_overrides.index_table, "self-runners-cache-index-${var.stage}")
    provenance_table  = coalesce(var.name_overrides.provenance_table, "self-runners-artifact-provenance-${var.stage}")
    staged_queue      = coalesce(var.name_overrides.staged_queue, "self-runners-cache-staged-${var.stage}")
    accessed_queue    = coalesce(var.name_overrides.accessed_queue, "self-runners-cache-accessed-${var.stage}")
    invalidate_queue  = coalesce(var.name_overrides.invalidate_queue, "self-runners-cache-invalidate-${var.stage}")
    metrics_namespace = coalesce(var.name_overrides.metrics_namespace, "Runcache/${var.stage}")
  }

  # Names of things runcache itself never looks up.
  prefix           = "self-runners-cache"
  cluster_name     = "${local.prefix}-workers-${var.stage}"
  worker_log_group = "/runcache/${var.stage}/workers"
  dashboard_name   = "runcache-${var.stage}"

  use_kms        = var.sse_algorithm == "aws:kms"
  create_kms_key = local.use_kms && var.kms_key_arn == null
  # one() of an empty list is null: no key when SSE-S3 is chosen.
  kms_key_arn = local.use_kms ? coalesce(var.kms_key_arn, one(aws_kms_key.this[*].arn)) : null

  tags = merge({ "runcache:stage" = var.stage }, var.tags)
}

# One key for everything runcache stores: the bucket, both tables, the six
# queues and the worker logs. Principals get to use it only through those
# services (IAM policy policies/kms.json.tftpl, condition kms:ViaService).
resource "aws_kms_key" "this" {
  count = local.create_kms_key ? 1 : 0

  description             = "runcache ${var.stage}: artifact bucket, cache tables, queues and worker logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_key[0].json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  count = local.create_kms_key ? 1 : 0

  name          = "alias/runcache-${var.stage}"
  target_key_id = aws_kms_key.this[0].key_id
}

data "aws_iam_policy_document" "kms_key" {
  count = local.create_kms_key ? 1 : 0

  # The account's IAM policies decide who may use the key (the default key
  # policy statement); runcache's own policies scope it with kms:ViaService.
  statement {
    sid       = "EnableIamPolicies"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts the worker log group with this key; the
  # encryption context pins the permission to that one log group.
  statement {
    sid = "AllowWorkerLogGroup"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.${data.aws_service_principal.this["logs"].suffix}"]
    }

    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.worker_log_group}"]
    }
  }
}
