output "runner_env" {
  description = "Environment for runners of the dev stage."
  value       = module.runcache.runner_env
}

output "runner_env_file" {
  description = "runner_env as KEY=value lines (RUNCACHE_MAX_TRUST = the instance profile's tier, protected)."
  value       = module.runcache.runner_env_file
}

output "runner_env_file_by_tier" {
  description = "The runner environment per trust tier: give a fleet the block of its role's tier."
  value       = module.runcache.runner_env_file_by_tier
}

output "runner_role_tiers" {
  description = "Runner roles and their trust tiers."
  value       = module.runcache.runner_role_tiers
}

output "runner_instance_profile_name" {
  description = "Instance profile to launch EC2 runners with."
  value       = module.runcache.runner_instance_profile_name
}

output "github_oidc_role_arns" {
  description = "Roles for aws-actions/configure-aws-credentials."
  value       = module.runcache.github_oidc_role_arns
}

output "admin_policy_arn" {
  description = "Attach to operators' roles (with kms_policy_arn)."
  value       = module.runcache.admin_policy_arn
}

output "kms_policy_arn" {
  description = "Attach beside admin_policy_arn on roles the module did not create (runner roles: use runner_role_names, which attaches it)."
  value       = module.runcache.kms_policy_arn
}

output "dashboard_url" {
  description = "CloudWatch dashboard."
  value       = module.runcache.dashboard_url
}

output "sweep_task_definition_arn" {
  description = "Task definition for running `runcache-worker sweep --once` by hand."
  value       = module.runcache.sweep_task_definition_arn
}

output "worker_security_group_id" {
  description = "Security group of the worker tasks."
  value       = module.runcache.worker_security_group_id
}

output "serve_url" {
  description = "URL of runcache serve (null unless serve_enabled)."
  value       = module.runcache.serve_url
}

output "serve_runner_env_file" {
  description = "ACTIONS_* cache variables for the runners' .env (add each job's ACTIONS_RUNTIME_TOKEN)."
  value       = module.runcache.serve_runner_env_file
}
