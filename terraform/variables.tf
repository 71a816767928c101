# Inputs of the runcache AWS module. Everything except `stage`, `worker_image`,
# `vpc_id` and `subnet_ids` has a default that is safe for production.

# --- identity -----------------------------------------------------------------

variable "stage" {
  description = "Deployment stage (dev, staging, prod, ...). It names every resource (self-runners-artifacts-{stage}, ...) and the metrics namespace Runcache/{stage}. Lower-case letters, digits and hyphens, at most 24 characters so that every derived name fits its AWS length limit."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$", var.stage))
    error_message = "stage must be 1-24 characters of a-z, 0-9 and '-', starting and ending with a letter or digit (it becomes part of an S3 bucket name)."
  }
}

variable "name_overrides" {
  description = "Override individual resource names; each defaults from the stage exactly as runcache's own configuration does (DESIGN.md, 'Configuration contract'). Dead-letter queues are always named '<queue>-dlq'. Whatever you set here is what the runner_env output hands to runcache."
  type = object({
    bucket            = optional(string)
    index_table       = optional(string)
    provenance_table  = optional(string)
    staged_queue      = optional(string)
    accessed_queue    = optional(string)
    invalidate_queue  = optional(string)
    metrics_namespace = optional(string)
  })
  default = {}

  validation {
    condition     = var.name_overrides.bucket == null || can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", coalesce(var.name_overrides.bucket, "xxx")))
    error_message = "name_overrides.bucket must be a valid S3 bucket name without dots (3-63 characters of a-z, 0-9, '-')."
  }

  validation {
    condition = alltrue([
      for q in [var.name_overrides.staged_queue, var.name_overrides.accessed_queue, var.name_overrides.invalidate_queue] :
      q == null || can(regex("^[A-Za-z0-9_-]{1,76}$", coalesce(q, "x")))
    ])
    error_message = "Queue name overrides must be 1-76 characters of A-Z, a-z, 0-9, '-' and '_' (the '-dlq' suffix takes the remaining 4 of SQS's 80)."
  }

  validation {
    condition = alltrue([
      for t in [var.name_overrides.index_table, var.name_overrides.provenance_table] :
      t == null || can(regex("^[A-Za-z0-9_.-]{3,255}$", coalesce(t, "xxx")))
    ])
    error_message = "Table name overrides must be 3-255 characters of A-Z, a-z, 0-9, '_', '-' and '.'."
  }
}

variable "tags" {
  description = "Tags added to every taggable resource the module creates (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}

# --- encryption ---------------------------------------------------------------

variable "sse_algorithm" {
  description = "Default encryption of the bucket: 'aws:kms' (SSE-KMS, the default) or 'AES256' (SSE-S3). With 'aws:kms' the same customer managed key also encrypts the tables, the queues and the worker log group; with 'AES256' the tables use the AWS managed DynamoDB key, the queues SQS-managed SSE and the log group CloudWatch's default encryption."
  type        = string
  default     = "aws:kms"

  validation {
    condition     = contains(["aws:kms", "AES256"], var.sse_algorithm)
    error_message = "sse_algorithm must be \"aws:kms\" or \"AES256\"."
  }
}

variable "kms_key_arn" {
  description = "ARN of an existing customer managed KMS key to use when sse_algorithm = \"aws:kms\". Null (the default) creates a dedicated key with rotation. A key you bring must let this account's IAM policies grant its use (the usual root statement) and let logs.<region>.amazonaws.com use it for the worker log group (see docs/deploy.md)."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", coalesce(var.kms_key_arn, "x")))
    error_message = "kms_key_arn must be a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>), not an alias."
  }
}

# --- bucket -------------------------------------------------------------------

variable "force_destroy" {
  description = "Let `terraform destroy` delete the bucket with its objects and versions. Keep false outside throw-away stages."
  type        = bool
  default     = false
}

variable "lifecycle_days" {
  description = "Object lifecycle, in days. staging/ holds unverified uploads; quarantine/ rejected ones kept for inspection; artifacts/ and metadata/ move to Glacier Instant Retrieval (millisecond reads, so a restore never waits for a thaw) and then expire. noncurrent_expiration: how long a deleted or overwritten version of an artifacts/ or metadata/ object is kept (the safety net for a bad sweep); staging/ and quarantine/ keep old versions 1 day. The index's ttl must not outlive artifacts_expiration, or a lookup would point at an expired object."
  type = object({
    staging_expiration     = optional(number, 1)
    quarantine_expiration  = optional(number, 14)
    artifacts_transition   = optional(number, 90)
    artifacts_expiration   = optional(number, 365)
    noncurrent_expiration  = optional(number, 7)
    abort_incomplete_multi = optional(number, 1)
  })
  default = {}

  validation {
    condition = alltrue([
      for d in values(var.lifecycle_days) : d >= 1 && floor(d) == d
    ])
    error_message = "Every lifecycle_days value must be a whole number of days >= 1."
  }

  validation {
    # Glacier IR bills a 90-day minimum; expiring sooner after the transition
    # than that only adds an early-deletion charge.
    condition     = var.lifecycle_days.artifacts_expiration >= var.lifecycle_days.artifacts_transition + 90
    error_message = "lifecycle_days.artifacts_expiration must be at least artifacts_transition + 90 (Glacier Instant Retrieval's minimum storage duration)."
  }
}

variable "access_log_bucket" {
  description = "Name of an existing bucket that receives S3 server access logs for the artifact bucket (optional). Null disables access logging."
  type        = string
  default     = null
}

variable "enforce_worker_only_writes" {
  description = "Add resource policies (bucket policy and DynamoDB resource policies) that deny writing artifacts/, metadata/, quarantine/ and the two tables to every principal except the worker task role and cas_writer_principal_arns. This keeps invariant 2 ('runners cannot poison') true even for runners whose instance role has broad permissions of its own."
  type        = bool
  default     = true
}

variable "enforce_staging_tiers" {
  description = "Add bucket policy statements that deny putting under staging/{tier}/ to every principal except the runner roles of that tier or above (the roles this module attaches runner policies to: runner_role_names, the instance profile's role, the github_oidc roles), the worker task role and cas_writer_principal_arns. Promote trusts the tier in a staging key, so this keeps a runner role that has broad S3 permissions of its own from staging under a higher tier. A role you attach a runner_policy_arns policy to yourself is refused by it: list it in runner_role_names instead."
  type        = bool
  default     = true
}

variable "cas_writer_principal_arns" {
  description = "Extra IAM role/user ARNs (break-glass operators, a migration job) allowed past the enforce_worker_only_writes and enforce_staging_tiers denies. Keep empty normally."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.cas_writer_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/", a))])
    error_message = "cas_writer_principal_arns must be IAM role or user ARNs."
  }
}

# --- tables -------------------------------------------------------------------

variable "deletion_protection" {
  description = "Enable DynamoDB deletion protection on both tables. Turn off only for throw-away stages."
  type        = bool
  default     = true
}

variable "index_contributor_insights" {
  description = "Enable CloudWatch Contributor Insights on the index table: the DynamoDB console then shows the most read partition keys (scopes) and items (exact cache keys) with no help from the workers. Billed per million events analysed."
  type        = bool
  default     = true
}

# --- queues -------------------------------------------------------------------

variable "max_receive_count" {
  description = "Receives after which a message moves to its dead-letter queue (a poison message, or one whose handler keeps failing)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000 && floor(var.max_receive_count) == var.max_receive_count
    error_message = "max_receive_count must be a whole number between 1 and 1000."
  }
}

variable "queue_visibility_timeout_seconds" {
  description = "Initial visibility timeout per queue. Workers extend it while a handler runs (STYLE.md 'Async workers'), so this only bounds how long a crashed worker's message stays hidden. staged is generous because promotion hashes and copies large objects."
  type = object({
    staged     = optional(number, 300)
    accessed   = optional(number, 60)
    invalidate = optional(number, 300)
  })
  default = {}

  validation {
    condition     = alltrue([for v in values(var.queue_visibility_timeout_seconds) : v >= 30 && v <= 43200])
    error_message = "Visibility timeouts must be between 30 and 43200 seconds (SQS's maximum is 12 hours)."
  }
}

variable "queue_retention_seconds" {
  description = "How long an unconsumed message stays on a main queue. Dead-letter queues always keep messages 14 days (SQS's maximum)."
  type        = number
  default     = 345600 # 4 days

  validation {
    condition     = var.queue_retention_seconds >= 3600 && var.queue_retention_seconds <= 1209600
    error_message = "queue_retention_seconds must be between 3600 (1 hour) and 1209600 (14 days)."
  }
}

# --- runner access ------------------------------------------------------------

# Trust tiers, lowest first: untrusted < pull-request < branch < protected.
# A runner role of tier T may stage uploads under staging/{t}/ for t <= T, and
# promote accepts from staging/{t}/ only what tier t may write: protected any
# ref; branch any ref but the default branch; pull-request and untrusted only
# refs/pull/*. docs/deploy.md, "Runner trust tiers".

variable "create_runner_instance_profile" {
  description = "Create an EC2 role + instance profile (self-runners-cache-runner-{stage}) carrying the runner policy of runner_instance_tier, for self-hosted runners on EC2."
  type        = bool
  default     = true
}

variable "runner_instance_tier" {
  description = "Trust tier of the instance profile's role: untrusted, pull-request, branch or protected (the default). The role may stage under this tier and every lower one. An instance role is shared by every job that runs on the instance, so the tier is the fleet's, not the job's: a fleet that also runs pull requests from forks must be split into tiers, one fleet per tier, e.g. this profile (protected) for pushes to the default branch and tags, and a separate fleet whose role is listed under runner_role_names[\"pull-request\"] for pull requests. Never launch runners that pick up fork pull requests with a protected or branch profile: any job on them could stage entries for the default branch."
  type        = string
  default     = "protected"

  validation {
    condition     = contains(["untrusted", "pull-request", "branch", "protected"], var.runner_instance_tier)
    error_message = "runner_instance_tier must be one of untrusted, pull-request, branch, protected."
  }
}

variable "runner_role_names" {
  description = "Existing IAM roles (your runners' current instance or pod roles) by trust tier, e.g. { protected = [\"ci-main-runners\"], pull-request = [\"ci-pr-runners\"] }: each role gets its tier's runner policy (and the KMS policy). Keys are tiers (untrusted, pull-request, branch, protected); a role may appear under one tier only. The same rule as runner_instance_tier applies: every job a role serves runs with the role's tier."
  type        = map(list(string))
  default     = {}

  validation {
    condition     = alltrue([for tier in keys(var.runner_role_names) : contains(["untrusted", "pull-request", "branch", "protected"], tier)])
    error_message = "runner_role_names keys must be trust tiers: untrusted, pull-request, branch, protected."
  }

  validation {
    condition     = length(flatten(values(var.runner_role_names))) == length(distinct(flatten(values(var.runner_role_names))))
    error_message = "A role may appear under one runner_role_names tier only (its tier is the highest it will ever need)."
  }

  validation {
    condition     = alltrue([for n in flatten(values(var.runner_role_names)) : can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", n))])
    error_message = "runner_role_names must hold role names (not ARNs): 1-64 characters of A-Z, a-z, 0-9 and +=,.@_-."
  }
}

variable "github_oidc" {
  description = <<-EOT
    GitHub Actions OIDC roles for runners. roles maps a short role suffix to
    the role's trust tier and the token subjects allowed to assume it, e.g.
      { main = { tier = "protected",    subjects = ["repo:my-org/my-repo:ref:refs/heads/main"] },
        pr   = { tier = "pull-request", subjects = ["repo:my-org/my-repo:pull_request"] } }
    creating self-runners-cache-runner-{suffix}-{stage} with the runner policy
    of its tier (untrusted, pull-request, branch or protected). The subjects
    decide which jobs get the tier: a branch or protected role must not
    admit pull_request subjects (validated: no subject ending in
    ":pull_request", and no wildcard subject that does not pin ":ref:" or
    ":environment:"). Give the account's existing GitHub provider in
    provider_arn, or set create_provider = true when the account has none (an
    account can hold only one provider for token.actions.githubusercontent.com).
  EOT
  type = object({
    roles = optional(map(object({
      tier     = string
      subjects = list(string)
    })), {})
    provider_arn    = optional(string)
    create_provider = optional(bool, false)
  })
  default = {}

  validation {
    condition     = alltrue([for k in keys(var.github_oidc.roles) : can(regex("^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$", k))])
    error_message = "github_oidc.roles keys must be 1-12 characters of a-z, 0-9 and '-' (they become part of a 64-character role name)."
  }

  validation {
    # Every subject must pin at least the owner: "repo:my-org/..." – never a
    # bare "*" that would let any GitHub repository assume the role.
    condition = alltrue(flatten([
      for r in values(var.github_oidc.roles) : concat(
        [length(r.subjects) > 0],
        [for s in r.subjects : can(regex("^repo:[A-Za-z0-9_.-]+/[^\\s]+$", s))]
      )
    ]))
    error_message = "Each github_oidc role needs at least one subject, and every subject must start with repo:<owner>/ (for example repo:my-org/my-repo:ref:refs/heads/main or repo:my-org/*)."
  }

  validation {
    condition     = alltrue([for r in values(var.github_oidc.roles) : contains(["untrusted", "pull-request", "branch", "protected"], r.tier)])
    error_message = "Each github_oidc role's tier must be one of untrusted, pull-request, branch, protected."
  }

  validation {
    # A pull_request job's subject is repo:OWNER/REPO:pull_request, for a
    # fork's pull request too. A branch or protected role that admits it would
    # let a pull request stage entries for branches.
    condition = alltrue(flatten([
      for r in values(var.github_oidc.roles) : [
        for s in r.subjects :
        !contains(["branch", "protected"], r.tier) || (
          !endswith(s, ":pull_request") &&
          (!strcontains(s, "*") && !strcontains(s, "?") || strcontains(s, ":ref:") || strcontains(s, ":environment:"))
        )
      ]
    ]))
    error_message = "github_oidc roles of tier branch or protected must not admit pull request jobs: no subject ending in :pull_request, and wildcard subjects must pin :ref: or :environment: (e.g. repo:my-org/my-repo:ref:refs/heads/*, not repo:my-org/my-repo:*)."
  }

  validation {
    condition     = length(var.github_oidc.roles) == 0 || ((var.github_oidc.provider_arn != null) != var.github_oidc.create_provider)
    error_message = "When github_oidc.roles is set, give exactly one of github_oidc.provider_arn or github_oidc.create_provider = true."
  }
}

variable "admin_role_names" {
  description = "Names of existing IAM roles to attach the admin policy (invalidate, inspect, redrive) to. The policy ARN is also an output."
  type        = list(string)
  default     = []
}

# --- workers ------------------------------------------------------------------

variable "worker_image" {
  description = "Container image of runcache-worker (pin a digest: repo@sha256:...). Its entrypoint is overridden by worker_entrypoint; the mode is the command."
  type        = string

  validation {
    condition     = length(trimspace(var.worker_image)) > 0
    error_message = "worker_image must name an image."
  }
}

variable "worker_entrypoint" {
  description = "Entrypoint that starts the worker binary inside the image; the mode (promote, metrics, invalidate, or sweep --once) is appended as the command."
  type        = list(string)
  default     = ["runcache-worker"]
}

variable "worker_cpu_architecture" {
  description = "CPU architecture of worker_image: X86_64 or ARM64 (Graviton, cheaper per vCPU)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.worker_cpu_architecture)
    error_message = "worker_cpu_architecture must be X86_64 or ARM64."
  }
}

variable "workers" {
  description = <<-EOT
    Size and scaling of each worker service. Each queue-consuming mode runs as
    its own ECS service that scales on its own queue: out by 1 task when at
    least scale_out_backlog messages are visible (by 3 when ten times that),
    in by 1 after 10 minutes with nothing visible or in flight. cpu/memory are
    Fargate units (cpu 256 = 0.25 vCPU). sweep is a scheduled one-shot task.
    min_count = 0 saves cost on idle stages, but SQS may take up to 15
    minutes to publish metrics for a queue that was idle 6 hours, so the first
    message can wait that long.
  EOT
  type = object({
    promote = optional(object({
      cpu               = optional(number, 1024)
      memory            = optional(number, 2048)
      min_count         = optional(number, 1)
      max_count         = optional(number, 10)
      scale_out_backlog = optional(number, 10)
    }), {})
    metrics = optional(object({
      cpu               = optional(number, 256)
      memory            = optional(number, 512)
      min_count         = optional(number, 1)
      max_count         = optional(number, 4)
      scale_out_backlog = optional(number, 500)
    }), {})
    invalidate = optional(object({
      cpu               = optional(number, 256)
      memory            = optional(number, 512)
      min_count         = optional(number, 1)
      max_count         = optional(number, 2)
      scale_out_backlog = optional(number, 50)
    }), {})
    sweep = optional(object({
      cpu    = optional(number, 512)
      memory = optional(number, 1024)
    }), {})
  })
  default = {}

  validation {
    condition = alltrue([
      for w in [var.workers.promote, var.workers.metrics, var.workers.invalidate, var.workers.sweep] :
      contains([256, 512, 1024, 2048, 4096, 8192, 16384], w.cpu) && w.memory >= 2 * w.cpu && w.memory <= 8 * w.cpu
    ])
    error_message = "Each worker cpu must be a Fargate size (256, 512, 1024, 2048, 4096, 8192, 16384) with memory between 2x and 8x cpu (see the Fargate task size table for the exact pairs)."
  }

  validation {
    condition = alltrue([
      for w in [var.workers.promote, var.workers.metrics, var.workers.invalidate] :
      w.min_count >= 0 && w.max_count >= 1 && w.min_count <= w.max_count && w.scale_out_backlog >= 1
    ])
    error_message = "Each worker service needs 0 <= min_count <= max_count, max_count >= 1 and scale_out_backlog >= 1."
  }
}

variable "worker_ephemeral_storage_gib" {
  description = "Ephemeral storage of each worker task in GiB (21-200), mounted at /tmp (TMPDIR) because the root filesystem is read-only. Null keeps Fargate's 20 GiB default."
  type        = number
  default     = null

  validation {
    condition     = var.worker_ephemeral_storage_gib == null || (coalesce(var.worker_ephemeral_storage_gib, 21) >= 21 && coalesce(var.worker_ephemeral_storage_gib, 21) <= 200)
    error_message = "worker_ephemeral_storage_gib must be null or between 21 and 200."
  }
}

variable "worker_environment" {
  description = "Extra environment variables for every worker task (e.g. RUST_LOG). They cannot replace the RUNCACHE_* contract variables, which the module sets."
  type        = map(string)
  default     = { RUST_LOG = "info" }
}

variable "sweep_schedule" {
  description = "EventBridge Scheduler expression for `runcache-worker sweep --once` (TTL expiry, per-scope quota LRU, lazy deletion of unreferenced blobs)."
  type        = string
  default     = "rate(1 hour)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.sweep_schedule))
    error_message = "sweep_schedule must be a rate(...) or cron(...) expression."
  }
}

variable "vpc_id" {
  description = "VPC in which the worker tasks run."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the worker tasks (private subnets with a NAT gateway or VPC endpoints for S3, DynamoDB, SQS, CloudWatch, Logs and ECR)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1 && length(var.subnet_ids) <= 16
    error_message = "Give between 1 and 16 subnet ids."
  }
}

variable "assign_public_ip" {
  description = "Give worker tasks a public IP (only for public subnets without NAT; prefer private subnets)."
  type        = bool
  default     = false
}

variable "additional_security_group_ids" {
  description = "Security groups attached to the worker tasks besides the module's own (which has no inbound rules and allows HTTPS out)."
  type        = list(string)
  default     = []
}

variable "worker_egress_cidr_blocks" {
  description = "Destinations the worker security group may reach on TCP 443 (AWS APIs, ECR). Narrow it to VPC endpoint ranges if you have them."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "log_retention_days" {
  description = "Retention of the worker log group."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch Logs' allowed values (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

# --- serve (serve.tf) -----------------------------------------------------------

variable "serve_enabled" {
  description = "Deploy `runcache serve` (the GitHub Actions cache protocol, docs/serve.md) as an ECS service behind an internal Application Load Balancer. Runners then hold only a bearer token; the serve task role holds the AWS credentials. Needs serve_certificate_arn, serve_allowed_cidr_blocks or serve_allowed_security_group_ids, and, by serve_auth_mode, serve_tokens_secret_arn (static) or serve_github_auth_toml (github)."
  type        = bool
  default     = false
}

variable "serve_max_trust" {
  description = "The most trust serve's uploads may carry (RUNCACHE_MAX_TRUST of the server): it stages each upload under min(trust of the token, serve_max_trust), and its task role may put under staging/{t}/ for t <= serve_max_trust only (the same rule as a runner role's tier). Set it to the highest trust a token gets: the highest in the tokens file (static), or protected when the github-auth TOML lists protected_refs (github; else branch). protected (the default, as in runcache's own configuration) lets protected tokens create default-branch entries."
  type        = string
  default     = "protected"

  validation {
    condition     = contains(["untrusted", "pull-request", "branch", "protected"], var.serve_max_trust)
    error_message = "serve_max_trust must be one of untrusted, pull-request, branch, protected."
  }
}

variable "serve_image" {
  description = "Image for serve; null (the default) uses worker_image. It must have the `runcache` binary on PATH and a POSIX /bin/sh (the entrypoint writes the injected secrets to files, then execs `runcache serve`)."
  type        = string
  default     = null
}

variable "serve_task" {
  description = "Size of the serve task (Fargate cpu/memory units), its count, and its --max-requests and --promotion-wait. desired_count is 0 or 1: uploads in flight live in the task that reserved them (blocks spooled on its disk), so two tasks behind one load balancer would split uploads."
  type = object({
    cpu                    = optional(number, 1024)
    memory                 = optional(number, 2048)
    desired_count          = optional(number, 1)
    max_requests           = optional(number, 64)
    promotion_wait_seconds = optional(number, 15)
  })
  default = {}

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.serve_task.cpu) && var.serve_task.memory >= 2 * var.serve_task.cpu && var.serve_task.memory <= 8 * var.serve_task.cpu
    error_message = "serve_task.cpu must be a Fargate size (256, 512, 1024, 2048, 4096, 8192, 16384) with memory between 2x and 8x cpu."
  }

  validation {
    condition     = contains([0, 1], var.serve_task.desired_count)
    error_message = "serve_task.desired_count must be 0 or 1: serve keeps uploads in flight in the task (reservations and spooled blocks), so a second task behind the load balancer would fail uploads whose requests reach both."
  }

  validation {
    condition     = var.serve_task.max_requests >= 1 && floor(var.serve_task.max_requests) == var.serve_task.max_requests && var.serve_task.promotion_wait_seconds >= 0 && floor(var.serve_task.promotion_wait_seconds) == var.serve_task.promotion_wait_seconds
    error_message = "serve_task.max_requests must be a whole number >= 1 and promotion_wait_seconds a whole number >= 0."
  }
}

variable "serve_ephemeral_storage_gib" {
  description = "Ephemeral storage of the serve task in GiB (21-200), mounted at /tmp: the upload spool (--spool-dir; blocks wait there for their block list, so as much as the largest uploads in flight at once), RUNCACHE_HOME and the secret files."
  type        = number
  default     = 50

  validation {
    condition     = var.serve_ephemeral_storage_gib >= 21 && var.serve_ephemeral_storage_gib <= 200 && floor(var.serve_ephemeral_storage_gib) == var.serve_ephemeral_storage_gib
    error_message = "serve_ephemeral_storage_gib must be a whole number between 21 and 200."
  }
}

variable "serve_environment" {
  description = "Extra environment variables for the serve task (e.g. RUNCACHE_LOG). They cannot replace the RUNCACHE_* contract variables, RUNCACHE_HOME or TMPDIR, which the module sets."
  type        = map(string)
  default     = {}
}

variable "serve_tokens_secret_arn" {
  description = "ARN of the Secrets Manager secret or SSM (SecureString) parameter whose value is the tokens file (TOML `[[token]]` tables, docs/serve.md \"Static tokens\"). ECS injects the value; the entrypoint writes it to a file and passes --tokens. Required with serve_auth_mode = \"static\", not taken with \"github\". A Secrets Manager JSON key (ARN:key::) is accepted."
  type        = string
  default     = null

  validation {
    condition     = var.serve_tokens_secret_arn == null || can(regex("^arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:|ssm:[a-z0-9-]+:[0-9]{12}:parameter/)", coalesce(var.serve_tokens_secret_arn, "x")))
    error_message = "serve_tokens_secret_arn must be a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "serve_auth_mode" {
  description = "How serve checks each job's bearer token (docs/serve.md, \"Tokens\"). static: listed tokens, the tokens file from serve_tokens_secret_arn (--tokens). github: the runner's own ACTIONS_RUNTIME_TOKEN, verified as a JWT by the settings in serve_github_auth_toml (--github-auth); no token is listed or set per job."
  type        = string
  default     = "static"

  validation {
    condition     = contains(["static", "github"], var.serve_auth_mode)
    error_message = "serve_auth_mode must be \"static\" (--tokens, serve_tokens_secret_arn) or \"github\" (--github-auth, serve_github_auth_toml)."
  }
}

variable "serve_github_auth_toml" {
  description = "With serve_auth_mode = \"github\" (required then, not taken otherwise): the contents of the --github-auth file, TOML with issuer, audience, repositories, jwks_url or jwks_file, and optionally protected_refs, repository_claim, leeway_seconds, jwks_min_refetch_seconds (docs/serve.md, \"The runner's own token\"). It holds no secret: it reaches the task as a plain environment variable, which the entrypoint writes to a file. jwks_url is fetched at start over the tasks' HTTPS egress (worker_egress_cidr_blocks, TCP 443 only, so an https:// URL on port 443); a jwks_file must be inside the image."
  type        = string
  default     = null

  validation {
    condition = var.serve_github_auth_toml == null || alltrue([
      for key in ["issuer", "audience", "repositories"] : can(regex("(?m)^[ \t]*\"?${key}\"?[ \t]*=", coalesce(var.serve_github_auth_toml, "x")))
    ]) && can(regex("(?m)^[ \t]*\"?jwks_(url|file)\"?[ \t]*=", coalesce(var.serve_github_auth_toml, "x")))
    error_message = "serve_github_auth_toml must set issuer, audience, repositories and one of jwks_url, jwks_file (docs/serve.md, \"The runner's own token\")."
  }
}

variable "serve_upstream_url" {
  description = "Where serve forwards the paths that are not the cache service's (--upstream), e.g. https://results-receiver.actions.githubusercontent.com/ so that upload-artifact and the other Actions services under the same ACTIONS_RESULTS_URL keep working. Null (the default) passes no flag: serve refuses those paths, naming the flag. Reached over the tasks' HTTPS egress (worker_egress_cidr_blocks, TCP 443), so an https:// URL on the default port."
  type        = string
  default     = null

  validation {
    condition     = var.serve_upstream_url == null || can(regex("^https://[^/:]+(/.*)?$", coalesce(var.serve_upstream_url, "x")))
    error_message = "serve_upstream_url must be an https:// URL on the default port (the serve tasks may only reach TCP 443), e.g. https://results-receiver.actions.githubusercontent.com/."
  }
}

variable "serve_url_secret_arn" {
  description = "ARN of a Secrets Manager secret or SSM parameter holding the key for serve's signed blob URLs (--url-secret-file; its bytes are the key). Optional: null gives each task a random key, so signed URLs handed out before a restart or deployment stop working (clients ask again on their next cache step). Use at least 32 random bytes."
  type        = string
  default     = null

  validation {
    condition     = var.serve_url_secret_arn == null || can(regex("^arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:|ssm:[a-z0-9-]+:[0-9]{12}:parameter/)", coalesce(var.serve_url_secret_arn, "x")))
    error_message = "serve_url_secret_arn must be a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "serve_secrets_kms_key_arns" {
  description = "Customer managed KMS keys encrypting serve_tokens_secret_arn / serve_url_secret_arn, if any (only used while serve reads at least one of them): serve's execution role may decrypt with them through Secrets Manager and SSM only. Not needed for the AWS managed keys."
  type        = list(string)
  default     = []
}

variable "serve_certificate_arn" {
  description = "ACM certificate of the HTTPS listener (443, TLS policy ELBSecurityPolicy-TLS13-1-2-2021-06), valid for serve_domain_name. Required with serve_enabled."
  type        = string
  default     = null

  validation {
    condition     = var.serve_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/", coalesce(var.serve_certificate_arn, "x")))
    error_message = "serve_certificate_arn must be an ACM certificate ARN."
  }
}

variable "serve_domain_name" {
  description = "Name clients reach serve at (e.g. cache.ci.internal); it makes the public URL (--public-url, signed URLs, the serve_url output) https://<name>. Null uses the load balancer's DNS name, which no ACM certificate covers, so clients would reject the TLS certificate: set it, and point DNS at serve_lb_dns_name (or give serve_route53_zone_id)."
  type        = string
  default     = null
}

variable "serve_route53_zone_id" {
  description = "Route 53 (private) hosted zone in which to create serve_domain_name as an alias of the load balancer. Null: manage the record yourself."
  type        = string
  default     = null
}

variable "serve_allowed_cidr_blocks" {
  description = "IPv4 CIDR blocks of the runners that may reach the serve load balancer (TCP 443 only). Give these or serve_allowed_security_group_ids."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.serve_allowed_cidr_blocks : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "serve_allowed_cidr_blocks must be IPv4 CIDR blocks, and not 0.0.0.0/0 (list the runners' subnets)."
  }
}

variable "serve_allowed_security_group_ids" {
  description = "Security groups of the runners that may reach the serve load balancer (TCP 443 only)."
  type        = list(string)
  default     = []
}

variable "serve_lb_subnet_ids" {
  description = "Subnets of the internal load balancer (at least two, in different Availability Zones); null uses subnet_ids. The serve task runs in subnet_ids."
  type        = list(string)
  default     = null
}

variable "serve_idle_timeout_seconds" {
  description = "Idle timeout of the load balancer. Finalizing an upload streams the whole archive into staging before it answers, so this must outlast that for the largest caches."
  type        = number
  default     = 600

  validation {
    condition     = var.serve_idle_timeout_seconds >= 60 && var.serve_idle_timeout_seconds <= 4000
    error_message = "serve_idle_timeout_seconds must be between 60 and 4000."
  }
}

variable "serve_access_log_bucket" {
  description = "Existing bucket for the load balancer's access logs (its policy must let Elastic Load Balancing deliver to prefix alb/). Null disables them."
  type        = string
  default     = null
}

variable "serve_lb_deletion_protection" {
  description = "Deletion protection of the serve load balancer. Turn off only for throw-away stages."
  type        = bool
  default     = true
}

# --- monitoring ---------------------------------------------------------------

variable "alarm_sns_topic_arn" {
  description = "SNS topic notified when an alarm fires and when it recovers. Null creates the alarms without actions (they still show on the dashboard)."
  type        = string
  default     = null
}

variable "alarm_thresholds" {
  description = "Alarm thresholds. low_hit_rate_percent: average per-repository HitRate over two hours. storage_bytes: total bucket size (all storage classes and versions) that counts as runaway growth. worker_errors: WorkerErrors per worker mode in 15 minutes. staged_age_seconds: age of the oldest unpromoted staged event."
  type = object({
    low_hit_rate_percent = optional(number, 50)
    storage_bytes        = optional(number, 1099511627776) # 1 TiB
    worker_errors        = optional(number, 5)
    staged_age_seconds   = optional(number, 900)
  })
  default = {}

  validation {
    condition     = var.alarm_thresholds.low_hit_rate_percent >= 0 && var.alarm_thresholds.low_hit_rate_percent <= 100
    error_message = "alarm_thresholds.low_hit_rate_percent must be between 0 and 100."
  }

  validation {
    condition     = var.alarm_thresholds.storage_bytes > 0 && var.alarm_thresholds.worker_errors >= 1 && var.alarm_thresholds.staged_age_seconds >= 60
    error_message = "alarm_thresholds: storage_bytes must be > 0, worker_errors >= 1 and staged_age_seconds >= 60."
  }
}

variable "most_accessed_rule" {
  description = <<-EOT
    Contributor Insights rule behind the dashboard's "most restored entries"
    widget. It counts JSON log lines of the metrics worker, one per handled
    cache.accessed event, matching every filter, keyed by the given JSON paths.
    The defaults expect tracing-subscriber's JSON layout with
      info!(event = "cache.accessed", repository, matched_key, hit_kind, ...)
    (docs/deploy.md, "Log contract"). Adjust the paths if the worker logs
    differently; set enabled = false to drop the rule and its widget.
  EOT
  type = object({
    enabled = optional(bool, true)
    keys    = optional(list(string), ["$.fields.repository", "$.fields.matched_key"])
    filters = optional(list(object({
      match  = string
      values = list(string)
      })), [
      { match = "$.fields.event", values = ["cache.accessed"] },
      { match = "$.fields.hit_kind", values = ["exact", "prefix"] },
    ])
  })
  default = {}

  validation {
    condition     = length(var.most_accessed_rule.keys) >= 1 && length(var.most_accessed_rule.keys) <= 4
    error_message = "most_accessed_rule.keys must have 1 to 4 JSON paths (a Contributor Insights limit)."
  }
}
