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

variable "github_oidc_subjects" {
  description = "GitHub OIDC subjects allowed to assume the dev runner role, e.g. [\"repo:my-org/my-repo:*\"]. Empty: no OIDC role."
  type        = list(string)
  default     = []
}

variable "github_oidc_provider_arn" {
  description = "ARN of the account's token.actions.githubusercontent.com OIDC provider (needed with github_oidc_subjects)."
  type        = string
  default     = null
}

variable "alarm_sns_topic_arn" {
  description = "SNS topic for alarm notifications (optional)."
  type        = string
  default     = null
}
