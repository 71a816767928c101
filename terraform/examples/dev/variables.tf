variable "region" {
  description = "AWS region of the dev stage."
  type        = string
  default     = "us-east-1"
}

variable "worker_image" {
  description = "runcache-worker image, pinned by digest (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/runcache-worker@sha256:...)."
  type        = string
}

variable "vpc_id" {
  description = "VPC for the worker tasks."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (with NAT or VPC endpoints) for the worker tasks."
  type        = list(string)
}

variable "github_repository" {
  description = "GitHub repository (owner/name) whose jobs may use the dev cache through OIDC: pushes to main get the protected role self-runners-cache-runner-main-dev, pull requests the pull-request role self-runners-cache-runner-pr-dev. Null: no OIDC roles."
  type        = string
  default     = null

  validation {
    condition     = var.github_repository == null || can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", coalesce(var.github_repository, "x/x")))
    error_message = "github_repository must be owner/name, without wildcards."
  }
}

variable "github_oidc_provider_arn" {
  description = "ARN of the account's token.actions.githubusercontent.com OIDC provider (needed with github_repository)."
  type        = string
  default     = null
}

variable "alarm_sns_topic_arn" {
  description = "SNS topic for alarm notifications (optional)."
  type        = string
  default     = null
}
