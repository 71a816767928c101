terraform {
  # optional() attribute defaults need 1.3; import/check blocks and the rest
  # of the 1.x language used here are covered by 1.5.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.100.0 is the release `terraform validate` was run against (the
      # only one at hand). Nothing here needs an attribute that differs
      # between 5.100 and 6.x: the region is data.aws_region's `id`
      # (main.tf), because `region` exists only from 6.0 and `name` is
      # deprecated there. 6.x itself was not available to validate against.
      version = ">= 5.100, < 7.0"
    }
  }
}
