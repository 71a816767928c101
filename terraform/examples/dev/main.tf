# A dev stage of runcache: throw-away settings (force_destroy, no deletion
# protection, invalidate worker scaled to zero when idle) on the module's
# production defaults otherwise.
#
#   cp terraform.tfvars.example terraform.tfvars   # fill in image, VPC, subnets
#   terraform init && terraform apply
#   terraform output -raw runner_env_file          # paste into the runners

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
    }
  }

  # Keep state remote and locked for any shared stage, e.g.:
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "runcache/dev.tfstate"
  #   region       = "us-east-1"
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      project = "runcache"
      stage   = "dev"
    }
  }
}

module "runcache" {
  source = "../.."

  stage        = "dev"
  worker_image = var.worker_image
  vpc_id       = var.vpc_id
  subnet_ids   = var.subnet_ids

  # Throw-away stage.
  force_destroy       = true
  deletion_protection = false
  log_retention_days  = 14

  workers = {
    promote    = { min_count = 1, max_count = 3 }
    metrics    = { min_count = 1, max_count = 1 }
    invalidate = { min_count = 0, max_count = 1 }
  }

  # Runner trust tiers (docs/deploy.md, "Runner trust tiers"). The instance
  # profile's fleet is protected: launch only runners that never pick up
  # pull requests with it. A fleet that runs pull requests gets a role of
  # its own under the pull-request tier, e.g.
  #   runner_role_names = { pull-request = ["ci-pr-runners"] }
  # and the runner_env_file_by_tier["pull-request"] environment.
  runner_instance_tier = "protected"

  # OIDC: pushes to main get the protected role, pull requests (forks
  # included) the pull-request role. Jobs pick the role that matches their
  # trigger (role-to-assume); a job whose subject does not match cannot
  # assume the role at all.
  github_oidc = {
    roles = var.github_repository == null ? {} : {
      main = { tier = "protected", subjects = ["repo:${var.github_repository}:ref:refs/heads/main"] }
      pr   = { tier = "pull-request", subjects = ["repo:${var.github_repository}:pull_request"] }
    }
    provider_arn = var.github_repository == null ? null : var.github_oidc_provider_arn
  }

  # runcache serve (docs/serve.md) behind an internal load balancer: off
  # unless terraform.tfvars sets serve_enabled = true and the secret,
  # certificate, name and runner CIDRs (commented example there). Its tier
  # caps the tokens' trust: a serve for pull-request runners only would
  # take "pull-request".
  serve_enabled                = var.serve_enabled
  serve_max_trust              = "protected"
  serve_tokens_secret_arn      = var.serve_tokens_secret_arn
  serve_url_secret_arn         = var.serve_url_secret_arn
  serve_certificate_arn        = var.serve_certificate_arn
  serve_domain_name            = var.serve_domain_name
  serve_route53_zone_id        = var.serve_route53_zone_id
  serve_allowed_cidr_blocks    = var.serve_allowed_cidr_blocks
  serve_lb_deletion_protection = false

  alarm_sns_topic_arn = var.alarm_sns_topic_arn
}
