# --- the configuration contract -------------------------------------------------

output "runner_env" {
  description = "Exactly the environment runcache reads (RUNCACHE_BACKEND, RUNCACHE_STAGE, AWS_REGION, the resource names and RUNCACHE_MAX_TRUST) for runners of runner_instance_tier, the instance profile's fleet. Fleets of another tier take runner_env_by_tier[tier]. The workers get the same minus RUNCACHE_MAX_TRUST."
  value       = local.runner_env_by_tier[var.runner_instance_tier]
}

output "runner_env_file" {
  description = "runner_env as KEY=value lines: paste into the runner's .env file (next to its run.sh) or append to $GITHUB_ENV."
  value       = local.runner_env_files[var.runner_instance_tier]
}

output "runner_env_by_tier" {
  description = "runner_env for each trust tier (untrusted, pull-request, branch, protected): the same names with RUNCACHE_MAX_TRUST = the tier. Give a fleet the block of its role's tier, so that its producer never stages above what its credentials may write."
  value       = local.runner_env_by_tier
}

output "runner_env_file_by_tier" {
  description = "runner_env_by_tier as KEY=value lines, per tier."
  value       = local.runner_env_files
}

# --- resources ---------------------------------------------------------------------

output "bucket_name" {
  description = "Artifact bucket."
  value       = aws_s3_bucket.artifacts.id
}

output "bucket_arn" {
  description = "ARN of the artifact bucket."
  value       = aws_s3_bucket.artifacts.arn
}

output "index_table_name" {
  description = "Cache index table."
  value       = aws_dynamodb_table.index.name
}

output "index_table_arn" {
  description = "ARN of the cache index table."
  value       = aws_dynamodb_table.index.arn
}

output "provenance_table_name" {
  description = "Provenance table."
  value       = aws_dynamodb_table.provenance.name
}

output "provenance_table_arn" {
  description = "ARN of the provenance table."
  value       = aws_dynamodb_table.provenance.arn
}

output "queue_urls" {
  description = "URLs of the queues, keyed staged, accessed, invalidate, staged-dlq, accessed-dlq, invalidate-dlq."
  value       = local.all_queue_urls
}

output "queue_arns" {
  description = "ARNs of the queues, keyed like queue_urls."
  value       = local.all_queue_arns
}

output "metrics_namespace" {
  description = "CloudWatch namespace the workers publish to."
  value       = local.names.metrics_namespace
}

output "kms_key_arn" {
  description = "KMS key encrypting bucket, tables, queues and logs (null with SSE-S3)."
  value       = local.kms_key_arn
}

# --- IAM ---------------------------------------------------------------------------

output "runner_policy_arns" {
  description = "Managed runner policy of each trust tier (untrusted, pull-request, branch, protected); the policy of tier T may stage under staging/{t}/ for t <= T. Prefer runner_role_names to attaching one yourself: with enforce_staging_tiers the bucket policy admits only the roles the module knows."
  value       = { for tier, p in aws_iam_policy.runner : tier => p.arn }
}

output "runner_role_tiers" {
  description = "Every role the module attached a runner policy to (runner_role_names, the instance profile's role, the github_oidc roles), with its trust tier."
  value       = local.runner_role_tiers
}

output "worker_policy_arn" {
  description = "Managed policy of the worker task role."
  value       = aws_iam_policy.worker.arn
}

output "admin_policy_arn" {
  description = "Managed policy for operators running `runcache admin` (and kms_policy_arn beside it)."
  value       = aws_iam_policy.admin.arn
}

output "kms_policy_arn" {
  description = "Managed policy granting use of the KMS key through S3, SQS and DynamoDB (null with SSE-S3)."
  value       = one(aws_iam_policy.kms[*].arn)
}

output "policy_documents" {
  description = "The rendered runner-{tier}, worker, admin (and server, kms) policy documents, for review."
  value       = merge(local.policy_documents, local.use_kms ? { kms = local.kms_policy_document } : {})
}

output "runner_instance_profile_name" {
  description = "Instance profile for EC2 runners (null unless create_runner_instance_profile)."
  value       = one(aws_iam_instance_profile.runner[*].name)
}

output "runner_instance_role_arn" {
  description = "Role behind runner_instance_profile_name."
  value       = one(aws_iam_role.runner_instance[*].arn)
}

output "github_oidc_role_arns" {
  description = "Role ARNs for aws-actions/configure-aws-credentials (role-to-assume), keyed by github_oidc.roles key (runner_role_tiers gives each role's tier)."
  value       = { for k, r in aws_iam_role.runner_github : k => r.arn }
}

output "worker_task_role_arn" {
  description = "Role the worker code runs as (the only principal allowed to write the CAS and the tables)."
  value       = aws_iam_role.worker_task.arn
}

output "server_task_role_arn" {
  description = "Role `runcache serve` runs as (null unless serve_enabled): stages up to serve_max_trust, reads the CAS and the tables, sends staged/accessed events."
  value       = one(aws_iam_role.server_task[*].arn)
}

output "server_policy_arn" {
  description = "Managed policy of the serve task role (null unless serve_enabled)."
  value       = one(aws_iam_policy.server[*].arn)
}

# --- workers and monitoring --------------------------------------------------------

output "ecs_cluster_name" {
  description = "ECS cluster of the workers."
  value       = aws_ecs_cluster.workers.name
}

output "worker_service_names" {
  description = "ECS services, keyed by mode (promote, metrics, invalidate)."
  value       = { for k, s in aws_ecs_service.worker : k => s.name }
}

output "sweep_task_definition_arn" {
  description = "Task definition of `runcache-worker sweep --once`, for running a sweep by hand."
  value       = aws_ecs_task_definition.worker["sweep"].arn
}

output "worker_security_group_id" {
  description = "Security group of the worker tasks (for VPC endpoint policies and rules)."
  value       = aws_security_group.workers.id
}

output "worker_log_group_name" {
  description = "CloudWatch log group of all worker tasks (stream prefix = mode) and of serve (stream prefix serve)."
  value       = aws_cloudwatch_log_group.workers.name
}

# --- serve -------------------------------------------------------------------------

output "serve_url" {
  description = "URL runners reach `runcache serve` at: https://serve_domain_name, or the load balancer's DNS name (null unless serve_enabled)."
  value       = local.serve_public_url
}

output "serve_lb_dns_name" {
  description = "DNS name of the internal serve load balancer, for the record of serve_domain_name (null unless serve_enabled)."
  value       = one(aws_lb.serve[*].dns_name)
}

output "serve_lb_zone_id" {
  description = "Hosted zone of the serve load balancer, for an alias record."
  value       = one(aws_lb.serve[*].zone_id)
}

output "serve_runner_env_file" {
  description = "The cache variables for a runner's .env (docs/serve.md, \"Pointing the runner at it\"); never ACTIONS_RUNTIME_TOKEN. With serve_auth_mode = \"static\" each job's ACTIONS_RUNTIME_TOKEN must then be set to a token of the tokens file; with \"github\" the runner's own is what serve verifies, so nothing else is set (null unless serve_enabled)."
  value       = var.serve_enabled ? "ACTIONS_RESULTS_URL=${local.serve_public_url}/\nACTIONS_CACHE_URL=${local.serve_public_url}/\nACTIONS_CACHE_SERVICE_V2=true\n" : null
}

output "serve_service_name" {
  description = "ECS service of serve, in ecs_cluster_name (null unless serve_enabled)."
  value       = one(aws_ecs_service.serve[*].name)
}

output "serve_security_group_ids" {
  description = "Security groups of the serve load balancer (lb) and tasks (tasks), for rules of your own (null unless serve_enabled)."
  value       = var.serve_enabled ? { lb = aws_security_group.serve_lb[0].id, tasks = aws_security_group.serve_tasks[0].id } : null
}

output "dashboard_name" {
  description = "CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.runcache.dashboard_name
}

output "dashboard_url" {
  description = "Console link to the dashboard."
  value       = "https://${local.region}.console.aws.amazon.com/cloudwatch/home?region=${local.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.runcache.dashboard_name}"
}

output "alarm_arns" {
  description = "Alarms that page (alarm_sns_topic_arn), not the autoscaling ones."
  value       = local.paging_alarm_arns
}
