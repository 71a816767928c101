# `runcache serve` on ECS Fargate behind an internal Application Load
# Balancer (docs/serve.md): the GitHub Actions cache protocol for runners
# that hold only a bearer token; the task role (iam.tf, policies/
# server.json.tftpl) holds the AWS credentials. Everything here exists only
# with serve_enabled = true.
#
#   runners --HTTPS 443--> internal ALB --HTTP 8080--> serve task --> S3, DynamoDB, SQS
#
# The same image as the workers (or serve_image), in the workers' cluster,
# with the workers' configuration contract (local.runcache_env) plus
# RUNCACHE_MAX_TRUST = serve_max_trust.
#
# One task: uploads in flight (reservations, blocks spooled on the task's
# disk until their block list arrives) live in that task, so an upload whose
# requests reached two tasks would fail (server/src/uploads.rs). Hence
# serve_task.desired_count is 0 or 1. A deployment overlaps old and new task
# briefly; an upload caught in between fails and the client only warns.
#
# Tokens (serve_auth_mode): "static" passes --tokens, the tokens file from
# serve_tokens_secret_arn; "github" passes --github-auth, a TOML file of
# issuer/audience/JWKS settings (serve_github_auth_toml, not secret) against
# which serve verifies the runner's own ACTIONS_RUNTIME_TOKEN. Exactly one
# of the two flags, as `runcache serve` requires. serve_upstream_url, when
# set, becomes --upstream: where the paths serve does not own (the artifact
# service...) are forwarded.
#
# Files: ECS injects a secret's value (and a variable's), not a file, and
# `runcache serve` reads files (--tokens / RUNCACHE_SERVE_TOKENS,
# --github-auth / RUNCACHE_SERVE_GITHUB_AUTH and --url-secret-file are
# paths). The entrypoint therefore is a short /bin/sh step that writes the
# injected values to files under /tmp (the task's ephemeral storage,
# encrypted by Fargate), unsets them and execs the command. The image needs
# `runcache` on PATH and a POSIX /bin/sh.
#
# Health: GET /healthz answers 200 "ok" without a token (server/src/lib.rs);
# the target group checks it.

locals {
  serve_count = var.serve_enabled ? 1 : 0
  serve_port  = 8080

  serve_image         = coalesce(var.serve_image, var.worker_image)
  serve_lb_subnet_ids = var.serve_lb_subnet_ids != null ? var.serve_lb_subnet_ids : var.subnet_ids
  # ALB and target group names: at most 32 characters.
  serve_lb_name = length("runcache-serve-${var.stage}") <= 32 ? "runcache-serve-${var.stage}" : "rcserve-${var.stage}"

  # What clients reach: the name the certificate is for, else the ALB's own
  # DNS name (which no ACM certificate can cover: set serve_domain_name).
  serve_public_url = var.serve_enabled ? "https://${coalesce(var.serve_domain_name, one(aws_lb.serve[*].dns_name))}" : null

  serve_static_auth = var.serve_auth_mode == "static"

  serve_secrets_dir      = "/tmp/serve-secrets"
  serve_tokens_file      = "${local.serve_secrets_dir}/tokens.toml"
  serve_url_secret_file  = "${local.serve_secrets_dir}/url-secret"
  serve_config_dir       = "/tmp/serve-config"
  serve_github_auth_file = "${local.serve_config_dir}/github-auth.toml"
  serve_spool_dir        = "/tmp/serve-spool"

  # Env names the secrets arrive under (their values), not runcache's own
  # variables: RUNCACHE_SERVE_TOKENS is the path of the tokens file. The
  # tokens secret only in static mode.
  serve_secrets = concat(
    local.serve_static_auth ? [{ name = "RUNCACHE_SERVE_TOKENS_TOML", valueFrom = var.serve_tokens_secret_arn }] : [],
    var.serve_url_secret_arn == null ? [] : [{ name = "RUNCACHE_SERVE_URL_SECRET", valueFrom = var.serve_url_secret_arn }],
  )

  serve_launcher = join("\n", concat(
    [
      "set -eu",
      "umask 077",
      "mkdir -p ${local.serve_secrets_dir} ${local.serve_config_dir} ${local.serve_spool_dir} /tmp/runcache",
    ],
    # The tokens file (a secret), or the github-auth TOML (a plain variable,
    # serve_env below).
    local.serve_static_auth ? [
      "printf '%s' \"$RUNCACHE_SERVE_TOKENS_TOML\" > ${local.serve_tokens_file}",
      "unset RUNCACHE_SERVE_TOKENS_TOML",
      ] : [
      "printf '%s' \"$RUNCACHE_SERVE_GITHUB_AUTH_TOML\" > ${local.serve_github_auth_file}",
      "unset RUNCACHE_SERVE_GITHUB_AUTH_TOML",
    ],
    var.serve_url_secret_arn == null ? [] : [
      "printf '%s' \"$RUNCACHE_SERVE_URL_SECRET\" > ${local.serve_url_secret_file}",
      "unset RUNCACHE_SERVE_URL_SECRET",
    ],
    ["exec \"$@\""],
  ))

  serve_command = concat(
    [
      "runcache", "serve",
      "--listen", "0.0.0.0:${local.serve_port}",
      "--public-url", local.serve_public_url,
      "--spool-dir", local.serve_spool_dir,
      "--max-requests", tostring(var.serve_task.max_requests),
      "--promotion-wait", tostring(var.serve_task.promotion_wait_seconds),
    ],
    # Exactly one of the two (ServeArgs' "auth" group).
    local.serve_static_auth ? ["--tokens", local.serve_tokens_file] : ["--github-auth", local.serve_github_auth_file],
    var.serve_upstream_url == null ? [] : ["--upstream", var.serve_upstream_url],
    var.serve_url_secret_arn == null ? [] : ["--url-secret-file", local.serve_url_secret_file],
  )

  # The workers' contract, with the server's tier; RUNCACHE_HOME on the
  # writable volume (the root filesystem is read-only); in github mode the
  # --github-auth file's contents, for the entrypoint.
  serve_env = merge(
    var.serve_environment,
    { TMPDIR = "/tmp", RUNCACHE_HOME = "/tmp/runcache" },
    local.runcache_env,
    { RUNCACHE_MAX_TRUST = var.serve_max_trust },
    { for k, v in { RUNCACHE_SERVE_GITHUB_AUTH_TOML = var.serve_github_auth_toml } : k => v if !local.serve_static_auth && v != null },
  )
}

# --- load balancer ---------------------------------------------------------------

resource "aws_security_group" "serve_lb" {
  count = local.serve_count

  name        = "${local.prefix}-serve-lb-${var.stage}"
  description = "runcache ${var.stage} serve load balancer: HTTPS in from runners, HTTP out to the serve tasks"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "serve_lb_cidr" {
  for_each = var.serve_enabled ? toset(var.serve_allowed_cidr_blocks) : toset([])

  security_group_id = aws_security_group.serve_lb[0].id
  description       = "HTTPS from runners (${each.key})"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.key
  tags              = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "serve_lb_sg" {
  for_each = var.serve_enabled ? toset(var.serve_allowed_security_group_ids) : toset([])

  security_group_id            = aws_security_group.serve_lb[0].id
  description                  = "HTTPS from runners (${each.key})"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = each.key
  tags                         = local.tags
}

resource "aws_vpc_security_group_egress_rule" "serve_lb_to_tasks" {
  count = local.serve_count

  security_group_id            = aws_security_group.serve_lb[0].id
  description                  = "HTTP to the serve tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.serve_port
  to_port                      = local.serve_port
  referenced_security_group_id = aws_security_group.serve_tasks[0].id
  tags                         = local.tags
}

resource "aws_lb" "serve" {
  #checkov:skip=CKV_AWS_91:Access logging is opt-in through var.serve_access_log_bucket (a log bucket with the ELB delivery policy is account infrastructure this module does not own), as for the artifact bucket.
  #checkov:skip=CKV2_AWS_28:Internal load balancer reachable only from serve_allowed_cidr_blocks / serve_allowed_security_group_ids; every request is authenticated by serve itself (bearer token or HMAC-signed URL), and a WAF web ACL is the caller's to attach.
  count = local.serve_count

  name                       = local.serve_lb_name
  internal                   = true
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.serve_lb[0].id]
  subnets                    = local.serve_lb_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.serve_lb_deletion_protection
  # Finalizing an upload streams the whole archive into staging before it
  # answers; the default 60 s would cut large ones off.
  idle_timeout = var.serve_idle_timeout_seconds

  dynamic "access_logs" {
    for_each = var.serve_access_log_bucket == null ? [] : [var.serve_access_log_bucket]

    content {
      bucket  = access_logs.value
      prefix  = "alb/${local.serve_lb_name}"
      enabled = true
    }
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = length(var.serve_allowed_cidr_blocks) + length(var.serve_allowed_security_group_ids) > 0
      error_message = "serve_enabled needs serve_allowed_cidr_blocks or serve_allowed_security_group_ids: the runners that may reach the load balancer."
    }
  }
}

resource "aws_lb_target_group" "serve" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; serve speaks plain HTTP on 8080, reachable only from the load balancer's security group inside the VPC.
  count = local.serve_count

  name        = local.serve_lb_name
  port        = local.serve_port
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  # The task's stopTimeout: in-flight transfers finish before it goes.
  deregistration_delay = 120

  # GET /healthz: 200 "ok", no token needed.
  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = "/healthz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "serve_https" {
  count = local.serve_count

  load_balancer_arn = aws_lb.serve[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.serve_certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.serve[0].arn
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.serve_certificate_arn != null
      error_message = "serve_enabled needs serve_certificate_arn: an ACM certificate for serve_domain_name."
    }
  }
}

resource "aws_route53_record" "serve" {
  count = var.serve_enabled && var.serve_route53_zone_id != null ? 1 : 0

  zone_id = var.serve_route53_zone_id
  name    = var.serve_domain_name
  type    = "A"

  alias {
    name                   = aws_lb.serve[0].dns_name
    zone_id                = aws_lb.serve[0].zone_id
    evaluate_target_health = true
  }

  lifecycle {
    precondition {
      condition     = var.serve_domain_name != null
      error_message = "serve_route53_zone_id needs serve_domain_name: the record to create."
    }
  }
}

# --- tasks -----------------------------------------------------------------------

resource "aws_security_group" "serve_tasks" {
  count = local.serve_count

  name        = "${local.prefix}-serve-${var.stage}"
  description = "runcache ${var.stage} serve tasks: HTTP in from the serve load balancer only, HTTPS out to AWS APIs and the image registry"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "serve_tasks_from_lb" {
  count = local.serve_count

  security_group_id            = aws_security_group.serve_tasks[0].id
  description                  = "HTTP from the serve load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.serve_port
  to_port                      = local.serve_port
  referenced_security_group_id = aws_security_group.serve_lb[0].id
  tags                         = local.tags
}

# The workers' egress (worker_egress_cidr_blocks), rule by rule.
resource "aws_vpc_security_group_egress_rule" "serve_tasks_https" {
  for_each = var.serve_enabled ? toset(var.worker_egress_cidr_blocks) : toset([])

  security_group_id = aws_security_group.serve_tasks[0].id
  description       = "HTTPS to S3, DynamoDB, SQS, Logs, Secrets Manager/SSM and ECR (or their VPC endpoints)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.key
  tags              = local.tags
}

resource "aws_ecs_task_definition" "serve" {
  count = local.serve_count

  family                   = "${local.prefix}-serve-${var.stage}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.serve_task.cpu
  memory                   = var.serve_task.memory
  execution_role_arn       = aws_iam_role.serve_execution[0].arn
  task_role_arn            = aws_iam_role.server_task[0].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.worker_cpu_architecture
  }

  # Secrets, RUNCACHE_HOME and the upload spool (--spool-dir): as much room
  # as the largest uploads in flight at once.
  volume {
    name = "tmp"
  }

  ephemeral_storage {
    size_in_gib = var.serve_ephemeral_storage_gib
  }

  container_definitions = jsonencode([
    {
      name        = "runcache-serve"
      image       = local.serve_image
      essential   = true
      entryPoint  = ["/bin/sh", "-c", local.serve_launcher, "runcache-serve"]
      command     = local.serve_command
      environment = [for k in sort(keys(local.serve_env)) : { name = k, value = local.serve_env[k] }]
      secrets     = local.serve_secrets

      portMappings = [
        { containerPort = local.serve_port, protocol = "tcp", name = "http" },
      ]

      readonlyRootFilesystem = true
      mountPoints = [
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]

      # SIGTERM: serve stops accepting and finishes the transfers in flight.
      stopTimeout     = 120
      linuxParameters = { initProcessEnabled = true }

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          "awslogs-group"         = aws_cloudwatch_log_group.workers.name
          "awslogs-region"        = local.region
          "awslogs-stream-prefix" = "serve"
          "mode"                  = "non-blocking"
          "max-buffer-size"       = "4m"
        }
      }
    },
  ])

  tags = local.tags

  lifecycle {
    precondition {
      condition     = !local.serve_static_auth || var.serve_tokens_secret_arn != null
      error_message = "serve_auth_mode = \"static\" needs serve_tokens_secret_arn: the Secrets Manager secret or SSM parameter holding the tokens file (docs/serve.md, \"Static tokens\"). Or set serve_auth_mode = \"github\" and serve_github_auth_toml."
    }

    precondition {
      condition     = local.serve_static_auth || var.serve_tokens_secret_arn == null
      error_message = "serve_tokens_secret_arn is for serve_auth_mode = \"static\"; with \"github\" serve verifies the runner's own token and reads no tokens file: drop it."
    }

    precondition {
      condition     = local.serve_static_auth || trimspace(coalesce(var.serve_github_auth_toml, " ")) != ""
      error_message = "serve_auth_mode = \"github\" needs serve_github_auth_toml: the --github-auth file's contents, TOML with issuer, audience, repositories and jwks_url or jwks_file (docs/serve.md, \"The runner's own token\")."
    }

    precondition {
      condition     = !local.serve_static_auth || var.serve_github_auth_toml == null
      error_message = "serve_github_auth_toml is only read with serve_auth_mode = \"github\": set that too (serve then verifies the runner's own token instead of the tokens file)."
    }
  }
}

resource "aws_ecs_service" "serve" {
  count = local.serve_count

  name                    = "serve"
  cluster                 = aws_ecs_cluster.workers.id
  task_definition         = aws_ecs_task_definition.serve[0].arn
  desired_count           = var.serve_task.desired_count
  launch_type             = "FARGATE"
  platform_version        = "LATEST"
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 60

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.serve_tasks[0].id]
    assign_public_ip = var.assign_public_ip
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.serve[0].arn
    container_name   = "runcache-serve"
    container_port   = local.serve_port
  }

  tags = local.tags

  depends_on = [aws_lb_listener.serve_https, aws_iam_role_policy.serve_secrets]
}
