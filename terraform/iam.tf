# IAM: who may do what (DESIGN.md invariants 1 and 2).
#
# The three principals' permissions are JSON templates in policies/, rendered
# here with templatefile() and in tests with plain ${name} substitution
# (policies/README.md gives the rule and example values):
#   runner  one policy per trust tier: put under staging/{tier}/ for its own
#           tier and every lower one, read artifacts/ + metadata/, read the
#           tables, send to the staged and accessed queues; explicit denies
#           for the rest
#   worker  everything the promote/metrics/invalidate/sweep handlers do
#   admin   send invalidations, read everything, inspect and redrive DLQs
#   kms     use of the runcache key through S3, SQS and DynamoDB only
#           (attached beside the others when sse_algorithm = "aws:kms")

locals {
  # Runner trust tiers, lowest first (runcache_schemas::TrustLevel). A runner
  # role of tier T may stage under staging/{t}/ for every t <= T: the producer
  # stages under the tier of the job it runs, capped by RUNCACHE_MAX_TRUST,
  # and promote refuses an event that claims more trust, or a scope, than the
  # tier in its staging key allows. So a tier is only reachable by holding
  # credentials of that tier or above.
  runner_tiers = ["untrusted", "pull-request", "branch", "protected"]
  runner_tier_staging = {
    for i, tier in local.runner_tiers : tier => slice(local.runner_tiers, 0, i + 1)
  }

  # One variable map renders every template; each uses a subset.
  policy_template_vars = {
    bucket_arn           = aws_s3_bucket.artifacts.arn
    index_table_arn      = aws_dynamodb_table.index.arn
    provenance_table_arn = aws_dynamodb_table.provenance.arn
    staged_queue_arn     = aws_sqs_queue.main["staged"].arn
    accessed_queue_arn   = aws_sqs_queue.main["accessed"].arn
    invalidate_queue_arn = aws_sqs_queue.main["invalidate"].arn
    staged_dlq_arn       = aws_sqs_queue.dlq["staged"].arn
    accessed_dlq_arn     = aws_sqs_queue.dlq["accessed"].arn
    invalidate_dlq_arn   = aws_sqs_queue.dlq["invalidate"].arn
    metrics_namespace    = local.names.metrics_namespace
    worker_log_group_arn = aws_cloudwatch_log_group.workers.arn
    aws_region           = local.region
    dns_suffix           = local.dns_suffix
  }

  # jsondecode() rejects a template that is not valid JSON (at plan time once
  # the ARNs are known); jsonencode() gives IAM a canonical document.
  # runner_staging_resources is the only placeholder whose value is JSON
  # rather than text inside a JSON string: the whole Resource array
  # (policies/README.md, "Rendering rule").
  runner_policy_documents = {
    for tier, allowed in local.runner_tier_staging : tier => jsonencode(jsondecode(templatefile(
      "${path.module}/policies/runner.json.tftpl",
      merge(local.policy_template_vars, {
        runner_staging_resources = jsonencode([for t in allowed : "${aws_s3_bucket.artifacts.arn}/staging/${t}/*"])
      })
    )))
  }

  policy_documents = merge(
    { for tier, doc in local.runner_policy_documents : "runner-${tier}" => doc },
    {
      worker = jsonencode(jsondecode(templatefile("${path.module}/policies/worker.json.tftpl", local.policy_template_vars)))
      admin  = jsonencode(jsondecode(templatefile("${path.module}/policies/admin.json.tftpl", local.policy_template_vars)))
    },
  )

  kms_policy_document = local.use_kms ? jsonencode(jsondecode(templatefile(
    "${path.module}/policies/kms.json.tftpl",
    merge(local.policy_template_vars, { kms_key_arn = local.kms_key_arn })
  ))) : null
}

resource "aws_iam_policy" "runner" {
  for_each = local.runner_tier_staging

  name        = "${local.prefix}-runner-${each.key}-${var.stage}"
  description = "runcache ${var.stage} runner, tier ${each.key}: upload to staging/{${join(",", each.value)}}/, read artifacts and the index, send staged/accessed events. Cannot write the CAS, the index or provenance."
  policy      = local.runner_policy_documents[each.key]
  tags        = merge(local.tags, { "runcache:runner-tier" = each.key })
}

resource "aws_iam_policy" "worker" {
  name        = "${local.prefix}-worker-${var.stage}"
  description = "runcache ${var.stage} workers: promote, metrics, invalidate and sweep."
  policy      = local.policy_documents.worker
  tags        = local.tags
}

resource "aws_iam_policy" "admin" {
  name        = "${local.prefix}-admin-${var.stage}"
  description = "runcache ${var.stage} admin: request invalidations, read everything, inspect and redrive dead letters."
  policy      = local.policy_documents.admin
  tags        = local.tags
}

resource "aws_iam_policy" "kms" {
  count = local.use_kms ? 1 : 0

  name        = "${local.prefix}-kms-${var.stage}"
  description = "runcache ${var.stage}: use the runcache KMS key through S3, SQS and DynamoDB only."
  policy      = local.kms_policy_document
  tags        = local.tags
}

# --- runners ------------------------------------------------------------------

data "aws_iam_policy_document" "runner_ec2_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = [local.spn["ec2"]]
    }
  }
}

# Every job on an instance shares its role, so the whole fleet launched with
# this profile gets one tier (runner_instance_tier).
resource "aws_iam_role" "runner_instance" {
  count = var.create_runner_instance_profile ? 1 : 0

  name               = "${local.prefix}-runner-${var.stage}"
  description        = "Self-hosted runner instances using runcache ${var.stage} (tier ${var.runner_instance_tier})."
  assume_role_policy = data.aws_iam_policy_document.runner_ec2_trust.json
  tags               = merge(local.tags, { "runcache:runner-tier" = var.runner_instance_tier })
}

resource "aws_iam_instance_profile" "runner" {
  count = var.create_runner_instance_profile ? 1 : 0

  name = "${local.prefix}-runner-${var.stage}"
  role = aws_iam_role.runner_instance[0].name
  tags = local.tags
}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.github_oidc.create_provider ? 1 : 0

  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
  # IAM no longer checks thumbprints for this provider (it trusts the
  # issuer's CA); older provider releases still require the field.
  thumbprint_list = [
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
  ]
  tags = local.tags
}

locals {
  github_oidc_provider_arn = var.github_oidc.create_provider ? one(aws_iam_openid_connect_provider.github[*].arn) : var.github_oidc.provider_arn
}

data "aws_iam_policy_document" "runner_github_trust" {
  for_each = var.github_oidc.roles

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    # Subjects look like repo:ORG/REPO:ref:refs/heads/main,
    # repo:ORG/REPO:pull_request or repo:ORG/REPO:environment:NAME.
    condition {
      test     = "StringLike"
      variable = "token.actions.githubusercontent.com:sub"
      values   = each.value.subjects
    }
  }
}

resource "aws_iam_role" "runner_github" {
  for_each = var.github_oidc.roles

  name                 = "${local.prefix}-runner-${each.key}-${var.stage}"
  description          = "GitHub Actions jobs (OIDC, ${each.key}, tier ${each.value.tier}) using runcache ${var.stage}."
  assume_role_policy   = data.aws_iam_policy_document.runner_github_trust[each.key].json
  max_session_duration = 3600
  tags                 = merge(local.tags, { "runcache:runner-tier" = each.value.tier })
}

locals {
  # Role name => tier for every role that gets a runner policy. Names are
  # known at plan time, so they can key the attachments below. A role listed
  # twice is an error (variables.tf validates runner_role_names; a for
  # expression with a duplicate key fails the plan).
  runner_role_tiers = merge(
    { for r in flatten([for tier, names in var.runner_role_names : [for n in names : { name = n, tier = tier }]]) : r.name => r.tier },
    var.create_runner_instance_profile ? { "${local.prefix}-runner-${var.stage}" = var.runner_instance_tier } : {},
    { for k, r in var.github_oidc.roles : "${local.prefix}-runner-${k}-${var.stage}" => r.tier },
  )

  # For the bucket policy (storage.tf): principal ARN patterns of the runner
  # roles. The module's own roles have no path; existing roles are named, not
  # looked up (they may be created in the same apply), so they may sit under
  # any IAM path: role names are unique in an account whatever the path, so
  # role/*/NAME matches only the role NAME.
  existing_runner_role_names = toset(flatten(values(var.runner_role_names)))
  runner_role_arn_patterns = {
    for name, tier in local.runner_role_tiers : name => concat(
      ["arn:${local.partition}:iam::${local.account_id}:role/${name}"],
      contains(local.existing_runner_role_names, name) ? ["arn:${local.partition}:iam::${local.account_id}:role/*/${name}"] : [],
    )
  }
  # Tier => ARN patterns of every runner role that may stage under it: roles
  # of that tier and above.
  staging_writer_arn_patterns = {
    for tier in local.runner_tiers : tier => sort(flatten([
      for name, t in local.runner_role_tiers : local.runner_role_arn_patterns[name]
      if index(local.runner_tiers, t) >= index(local.runner_tiers, tier)
    ]))
  }

  admin_role_names = toset(var.admin_role_names)
}

resource "aws_iam_role_policy_attachment" "runner" {
  for_each = local.runner_role_tiers

  role       = each.key
  policy_arn = aws_iam_policy.runner[each.value].arn

  depends_on = [aws_iam_role.runner_instance, aws_iam_role.runner_github]
}

resource "aws_iam_role_policy_attachment" "runner_kms" {
  for_each = local.use_kms ? local.runner_role_tiers : {}

  role       = each.key
  policy_arn = aws_iam_policy.kms[0].arn

  depends_on = [aws_iam_role.runner_instance, aws_iam_role.runner_github]
}

resource "aws_iam_role_policy_attachment" "admin" {
  for_each = local.admin_role_names

  role       = each.key
  policy_arn = aws_iam_policy.admin.arn
}

resource "aws_iam_role_policy_attachment" "admin_kms" {
  for_each = local.use_kms ? local.admin_role_names : toset([])

  role       = each.key
  policy_arn = aws_iam_policy.kms[0].arn
}

# --- workers ------------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = [local.spn["ecs-tasks"]]
    }

    # Confused-deputy guard: only ECS acting for this account.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

# What the worker code runs as.
resource "aws_iam_role" "worker_task" {
  name               = "${local.prefix}-worker-task-${var.stage}"
  description        = "runcache ${var.stage} worker tasks (promote, metrics, invalidate, sweep)."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "worker" {
  role       = aws_iam_role.worker_task.name
  policy_arn = aws_iam_policy.worker.arn
}

resource "aws_iam_role_policy_attachment" "worker_kms" {
  count = local.use_kms ? 1 : 0

  role       = aws_iam_role.worker_task.name
  policy_arn = aws_iam_policy.kms[0].arn
}

# The ECS agent assumes the execution role; it carries only image pull and
# log delivery, and its trust stays the plain service principal.
data "aws_iam_policy_document" "ecs_execution_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = [local.spn["ecs-tasks"]]
    }
  }
}

# What ECS uses to pull the image and ship logs; never seen by worker code.
resource "aws_iam_role" "worker_execution" {
  name               = "${local.prefix}-worker-exec-${var.stage}"
  description        = "ECS agent for runcache ${var.stage} workers: image pull and log delivery."
  assume_role_policy = data.aws_iam_policy_document.ecs_execution_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "worker_execution" {
  role       = aws_iam_role.worker_execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# --- sweep schedule -----------------------------------------------------------

data "aws_iam_policy_document" "scheduler_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = [local.spn["scheduler"]]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "sweep_scheduler" {
  name               = "${local.prefix}-sweep-scheduler-${var.stage}"
  description        = "EventBridge Scheduler starting runcache ${var.stage} sweep tasks."
  assume_role_policy = data.aws_iam_policy_document.scheduler_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "sweep_scheduler" {
  statement {
    sid       = "RunSweepTask"
    actions   = ["ecs:RunTask"]
    resources = ["${aws_ecs_task_definition.worker["sweep"].arn_without_revision}:*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.workers.arn]
    }
  }

  statement {
    sid       = "PassSweepRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.worker_task.arn, aws_iam_role.worker_execution.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = [local.spn["ecs-tasks"]]
    }
  }
}

resource "aws_iam_role_policy" "sweep_scheduler" {
  name   = "run-sweep"
  role   = aws_iam_role.sweep_scheduler.id
  policy = data.aws_iam_policy_document.sweep_scheduler.json
}
