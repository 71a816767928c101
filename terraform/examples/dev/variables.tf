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

variable "serve_enabled" {
  description = "Deploy `runcache serve` behind an internal load balancer (needs the four serve_* values below)."
  type        = bool
  default     = false
}

variable "serve_tokens_secret_arn" {
  description = "Secrets Manager secret (or SSM parameter) ARN whose value is serve's tokens file."
  type        = string
  default     = null
}

variable "serve_url_secret_arn" {
  description = "Secrets Manager secret (or SSM parameter) ARN holding the signed-URL key (optional)."
  type        = string
  default     = null
}

variable "serve_certificate_arn" {
  description = "ACM certificate for serve_domain_name."
  type        = string
  default     = null
}

variable "serve_domain_name" {
  description = "Name runners reach serve at, e.g. cache.dev.ci.internal."
  type        = string
  default     = null
}

variable "serve_route53_zone_id" {
  description = "Private hosted zone for serve_domain_name (optional: else create the record yourself)."
  type        = string
  default     = null
}

variable "serve_allowed_cidr_blocks" {
  description = "Runner subnets that may reach serve on 443."
  type        = list(string)
  default     = []
}

variable "alarm_sns_topic_arn" {
  description = "SNS topic for alarm notifications (optional)."
  type        = string
  default     = null
}
