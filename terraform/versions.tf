terraform {
  # optional() attribute defaults need 1.3; import/check blocks and the rest
  # of the 1.x language used here are covered by 1.5.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.100 introduced data.aws_region.region (the v6 spelling); every
      # resource argument used here exists unchanged in 5.100 through 6.x.
      version = ">= 5.100, < 7.0"
    }
  }
}
