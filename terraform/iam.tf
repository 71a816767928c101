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
#   server  `runcache serve` (serve.tf, only with serve_enabled): a runner's
#           rights up to serve_max_trust, plus deleting its own staged
#           uploads it will not announce (no reading staging back: it does
#           not HEAD its own puts)
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

  # The server's staging resources are a runner's of tier serve_max_trust:
  # serve stages each upload under min(trust of the token, serve_max_trust).
  server_policy_document = var.serve_enabled ? jsonencode(jsondecode(templatefile(
    "${path.module}/policies/server.json.tftpl",
    merge(local.policy_template_vars, {
      server_staging_resources = jsonencode([for t in local.runner_tier_staging[var.serve_max_trust] : "${aws_s3_bucket.artifacts.arn}/staging/${t}/*"])
    })
  ))) : null

  policy_documents = merge(
    { for tier, doc in local.runner_policy_documents : "runner-${tier}" => doc },
    {
      worker = jsonencode(jsondecode(templatefile("${path.module}/policies/worker.json.tftpl", local.policy_template_vars)))
      admin  = jsonencode(jsondecode(templatefile("${path.module}/policies/admin.json.tftpl", local.policy_template_vars)))
    },
    var.serve_enabled ? { server = local.server_policy_document } : {},
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
  # of that tier and above, and the serve task role (serve.tf) for the tiers
  # up to serve_max_trust. The server role is not in runner_role_tiers: it
  # gets the server policy, not a runner policy.
  staging_writer_arn_patterns = {
    for tier in local.runner_tiers : tier => sort(concat(
      flatten([
        for name, t in local.runner_role_tiers : local.runner_role_arn_patterns[name]
        if index(local.runner_tiers, t) >= index(local.runner_tiers, tier)
      ]),
      var.serve_enabled && index(local.runner_tiers, var.serve_max_trust) >= index(local.runner_tiers, tier) ? ["arn:${local.partition}:iam::${local.account_id}:role/${local.server_task_role_name}"] : [],
    ))
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

# --- serve (serve.tf) ---------------------------------------------------------

locals {
  server_task_role_name     = "${local.prefix}-serve-task-${var.stage}"
  serve_execution_role_name = "${local.prefix}-serve-exec-${var.stage}"
  # The secrets the task reads: the tokens file in static mode only (github
  # mode verifies the runner's own token), and the URL key if given.
  serve_secret_value_from = compact([var.serve_auth_mode == "static" ? var.serve_tokens_secret_arn : null, var.serve_url_secret_arn])
  # Whether there is any (else the execution role gets no secrets policy: IAM
  # refuses a policy without statements). Conditionals rather than && / ||,
  # so that static mode decides it even while an ARN is unknown at plan.
  serve_reads_secrets       = !var.serve_enabled ? false : var.serve_auth_mode == "static" ? true : var.serve_url_secret_arn != null
  serve_secretsmanager_arns = [for a in local.serve_secret_value_from : regex("^arn:[^:]+:secretsmanager:[^:]+:[0-9]{12}:secret:[^:]+", a) if strcontains(a, ":secretsmanager:")]
  serve_ssm_parameter_arns  = [for a in local.serve_secret_value_from : a if strcontains(a, ":ssm:")]
}

resource "aws_iam_policy" "server" {
  count = var.serve_enabled ? 1 : 0

  name        = "${local.prefix}-server-${var.stage}"
  description = "runcache ${var.stage} serve: upload to staging/{${join(",", local.runner_tier_staging[var.serve_max_trust])}}/ and discard its own staged uploads, read artifacts and the index, send staged/accessed events. Cannot write the CAS, the index or provenance."
  policy      = local.server_policy_document
  tags        = merge(local.tags, { "runcache:runner-tier" = var.serve_max_trust })
}

# What `runcache serve` runs as: it holds the AWS credentials, runners only
# a bearer token.
resource "aws_iam_role" "server_task" {
  count = var.serve_enabled ? 1 : 0

  name               = local.server_task_role_name
  description        = "runcache ${var.stage} serve tasks (GitHub Actions cache protocol, tier up to ${var.serve_max_trust})."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
  tags               = merge(local.tags, { "runcache:runner-tier" = var.serve_max_trust })
}

resource "aws_iam_role_policy_attachment" "server" {
  count = var.serve_enabled ? 1 : 0

  role       = aws_iam_role.server_task[0].name
  policy_arn = aws_iam_policy.server[0].arn
}

resource "aws_iam_role_policy_attachment" "server_kms" {
  count = var.serve_enabled && local.use_kms ? 1 : 0

  role       = aws_iam_role.server_task[0].name
  policy_arn = aws_iam_policy.kms[0].arn
}

# Its own execution role, not the workers': only this one may read the
# token file and the URL-signing key (whichever of them serve uses).
resource "aws_iam_role" "serve_execution" {
  count = var.serve_enabled ? 1 : 0

  name               = local.serve_execution_role_name
  description        = "ECS agent for runcache ${var.stage} serve: image pull, log delivery and the serve secrets."
  assume_role_policy = data.aws_iam_policy_document.ecs_execution_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "serve_execution" {
  count = var.serve_enabled ? 1 : 0

  role       = aws_iam_role.serve_execution[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "serve_secrets" {
  count = var.serve_enabled && local.serve_reads_secrets ? 1 : 0

  dynamic "statement" {
    for_each = length(local.serve_secretsmanager_arns) > 0 ? [1] : []

    content {
      sid       = "ReadServeSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.serve_secretsmanager_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.serve_ssm_parameter_arns) > 0 ? [1] : []

    content {
      sid       = "ReadServeParameters"
      actions   = ["ssm:GetParameters"]
      resources = local.serve_ssm_parameter_arns
    }
  }

  # Only for secrets encrypted with a customer managed key (AWS managed keys
  # need no grant here).
  dynamic "statement" {
    for_each = length(var.serve_secrets_kms_key_arns) > 0 ? [1] : []

    content {
      sid       = "DecryptServeSecrets"
      actions   = ["kms:Decrypt"]
      resources = var.serve_secrets_kms_key_arns

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.${local.dns_suffix}", "ssm.${local.region}.${local.dns_suffix}"]
      }
    }
  }
}

resource "aws_iam_role_policy" "serve_secrets" {
  count = var.serve_enabled && local.serve_reads_secrets ? 1 : 0

  name   = "read-serve-secrets"
  role   = aws_iam_role.serve_execution[0].id
  policy = data.aws_iam_policy_document.serve_secrets[0].json
}
