//! Static checks of `terraform/`, which cannot be planned here: the IAM
//! policy templates, rendered and evaluated, keep runners out of everything
//! but staging, and each runner trust tier out of higher tiers' staging
//! prefixes; every name the code relies on appears in the module; and every
//! dashboard widget and alarm graphs a metric the workers really emit.

use std::{collections::BTreeMap, fs, path::PathBuf};

use runcache_infra::{metrics::names as metric_names, names::STAGING_PREFIX};
use runcache_schemas::TrustLevel;
use serde_json::Value;

fn terraform_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../terraform")
}

fn example_values() -> BTreeMap<String, String> {
    let path = terraform_dir().join("policies/example-values.json");
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// Renders `policies/{name}.json.tftpl` with `example-values.json`, by the
/// plain `${name}` substitution the module's `templatefile` amounts to.
fn policy(name: &str) -> Value {
    render(name, example_values())
}

/// The runner policy of `tier`: the example values, with
/// `runner_staging_resources` as `iam.tf` computes it for that tier.
fn runner_policy(tier: TrustLevel) -> Value {
    let mut values = example_values();
    values.insert(
        "runner_staging_resources".into(),
        staging_resources(&values["bucket_arn"], tier),
    );
    render("runner", values)
}

/// The `runcache serve` task role's policy for `serve_max_trust = tier`:
/// `server_staging_resources` is a runner's `runner_staging_resources` for
/// that tier (iam.tf: `local.runner_tier_staging[var.serve_max_trust]`).
fn server_policy(tier: TrustLevel) -> Value {
    let mut values = example_values();
    values.insert(
        "server_staging_resources".into(),
        staging_resources(&values["bucket_arn"], tier),
    );
    render("server", values)
}

/// policies/README.md's rule for `runner_staging_resources`: a JSON array
/// of `{bucket_arn}/staging/{t}/*` for every tier `t <= tier`, lowest first
/// (iam.tf: `jsonencode([for t in allowed : "${...arn}/staging/${t}/*"])`).
fn staging_resources(bucket_arn: &str, tier: TrustLevel) -> String {
    let resources: Vec<String> = TrustLevel::ALL
        .iter()
        .filter(|t| **t <= tier)
        .map(|t| format!("{bucket_arn}/{STAGING_PREFIX}{t}/*"))
        .collect();
    serde_json::to_string(&resources).unwrap()
}

fn render(name: &str, values: BTreeMap<String, String>) -> Value {
    let dir = terraform_dir().join("policies");
    let mut text = fs::read_to_string(dir.join(format!("{name}.json.tftpl"))).unwrap();
    for (k, v) in &values {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    assert!(!text.contains("${"), "{name}: unrendered placeholder left");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{name} is not JSON after rendering: {e}"))
}

fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => vec![],
    }
}

/// IAM wildcard match: `*` any run, `?` one character; case-insensitive
/// for actions.
fn glob(pattern: &str, value: &str) -> bool {
    fn go(p: &[u8], v: &[u8]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], v) || (!v.is_empty() && go(p, &v[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &v[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), value.as_bytes())
}

/// Whether `policy` allows `action` on `resource`: some Allow matches and no
/// Deny does. Conditional Allows count as allowing (the conservative reading
/// for "cannot" assertions).
fn allows(policy: &Value, action: &str, resource: &str) -> bool {
    let statements = policy["Statement"].as_array().expect("Statement list");
    let matches = |s: &Value| {
        as_list(&s["Action"])
            .iter()
            .any(|a| glob(&a.to_lowercase(), &action.to_lowercase()))
            && as_list(&s["Resource"]).iter().any(|r| glob(r, resource))
    };
    let denied = statements
        .iter()
        .any(|s| s["Effect"] == "Deny" && matches(s) && s.get("Condition").is_none());
    !denied
        && statements
            .iter()
            .any(|s| s["Effect"] == "Allow" && matches(s))
}

/// Whether an unconditional Deny of `policy` matches `action` on
/// `resource`: the explicit deny that beats whatever else the role may be
/// granted.
fn denies(policy: &Value, action: &str, resource: &str) -> bool {
    policy["Statement"]
        .as_array()
        .expect("Statement list")
        .iter()
        .any(|s| {
            s["Effect"] == "Deny"
                && s.get("Condition").is_none()
                && as_list(&s["Action"])
                    .iter()
                    .any(|a| glob(&a.to_lowercase(), &action.to_lowercase()))
                && as_list(&s["Resource"]).iter().any(|r| glob(r, resource))
        })
}

const BUCKET: &str = "arn:aws:s3:::self-runners-artifacts-dev";
const INDEX: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/self-runners-cache-index-dev";
const PROVENANCE: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/self-runners-artifact-provenance-dev";
const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:self-runners-cache-";

/// `staging/{tier}/{upload_id}`.
fn staged(tier: TrustLevel, upload_id: &str) -> String {
    format!("{BUCKET}/{STAGING_PREFIX}{tier}/{upload_id}")
}

#[test]
fn runners_of_every_tier_may_stage_and_read_but_never_write_the_cas_index_or_provenance() {
    for tier in TrustLevel::ALL {
        runner_stays_out_of_the_cas_index_and_provenance(tier);
    }
}

fn runner_stays_out_of_the_cas_index_and_provenance(tier: TrustLevel) {
    let runner = runner_policy(tier);
    let obj = |k: &str| format!("{BUCKET}/{k}");
    assert!(
        allows(&runner, "s3:PutObject", &staged(tier, "0190-upload")),
        "{tier} runner cannot stage under its own tier"
    );
    assert!(allows(&runner, "s3:GetObject", &obj("artifacts/abc")));
    assert!(allows(&runner, "s3:GetObject", &obj("metadata/abc.json")));
    assert!(allows(&runner, "dynamodb:GetItem", PROVENANCE));
    assert!(allows(&runner, "dynamodb:Query", INDEX));
    // `runcache explain` finds the key in other versions and scopes
    // through the index's GSIs: reading, like the rest of the index.
    assert!(allows(
        &runner,
        "dynamodb:Query",
        &format!("{INDEX}/index/repository-toolchain-index")
    ));
    assert!(allows(
        &runner,
        "sqs:SendMessage",
        &format!("{QUEUE}staged-dev")
    ));
    assert!(allows(
        &runner,
        "sqs:SendMessage",
        &format!("{QUEUE}accessed-dev")
    ));
    for key in [
        "artifacts/abc",
        "metadata/abc.json",
        "quarantine/u1",
        "quarantine/promoting/u1",
        "other/x",
        "staging",
    ] {
        for action in ["s3:PutObject", "s3:AbortMultipartUpload"] {
            assert!(
                !allows(&runner, action, &obj(key)),
                "{tier} runner may {action} {key}"
            );
        }
    }
    for action in [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:PutObjectAcl",
        "s3:PutBucketPolicy",
    ] {
        for key in [
            staged(tier, "u1"),
            staged(TrustLevel::Untrusted, "u1"),
            obj("artifacts/abc"),
            obj("metadata/abc.json"),
        ] {
            assert!(
                !allows(&runner, action, &key),
                "{tier} runner may {action} {key}"
            );
        }
    }
    for table in [INDEX, PROVENANCE] {
        for action in [
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:DeleteTable",
        ] {
            assert!(
                !allows(&runner, action, table),
                "{tier} runner may {action} on {table}"
            );
        }
    }
    assert!(
        !allows(
            &runner,
            "sqs:SendMessage",
            &format!("{QUEUE}invalidate-dev")
        ),
        "{tier} runner may invalidate"
    );
    for q in ["staged-dev-dlq", "accessed-dev-dlq", "invalidate-dev-dlq"] {
        assert!(
            !allows(&runner, "sqs:SendMessage", &format!("{QUEUE}{q}")),
            "{tier} runner may send to {q}"
        );
    }
    for q in [
        "staged-dev",
        "accessed-dev",
        "invalidate-dev",
        "staged-dev-dlq",
    ] {
        for action in ["sqs:DeleteMessage", "sqs:ReceiveMessage", "sqs:PurgeQueue"] {
            assert!(
                !allows(&runner, action, &format!("{QUEUE}{q}")),
                "{tier} runner may {action} on {q}"
            );
        }
    }
}

/// The fix for cache poisoning by claim: promote trusts the tier in the
/// staging key, so a runner of tier T must be able to write
/// `staging/{t}/...` exactly for `t <= T` (a protected runner running a pull
/// request job stages under pull-request/), and nothing else under staging/.
#[test]
fn each_runner_tier_stages_only_under_its_own_and_lower_tiers() {
    let actions = [
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ];
    for tier in TrustLevel::ALL {
        let runner = runner_policy(tier);
        for target in TrustLevel::ALL {
            for action in actions {
                assert_eq!(
                    allows(&runner, action, &staged(target, "0190-upload")),
                    target <= tier,
                    "{tier} runner: {action} under staging/{target}/"
                );
            }
        }
        // The old flat layout, and anything that is not a tier's prefix.
        for key in [
            "staging/0190-upload",
            "staging/x",
            "staging/",
            "staging/admin/x",
            "staging/pull-requests/x",
            "staging/protectedx/y",
            "staging/Protected/x",
            "staging/untrusted",
            "staging/protected",
        ] {
            for action in actions {
                assert!(
                    !allows(&runner, action, &format!("{BUCKET}/{key}")),
                    "{tier} runner may {action} {key}"
                );
            }
        }
    }
    // Spelled out for the case that motivated the tiers.
    let pr = runner_policy(TrustLevel::PullRequest);
    for key in ["staging/protected/x", "staging/branch/x", "staging/x"] {
        assert!(
            !allows(&pr, "s3:PutObject", &format!("{BUCKET}/{key}")),
            "a pull-request runner may put {key}"
        );
    }
    assert!(allows(
        &pr,
        "s3:PutObject",
        &staged(TrustLevel::PullRequest, "x")
    ));
    assert!(allows(
        &pr,
        "s3:PutObject",
        &staged(TrustLevel::Untrusted, "x")
    ));
}

/// The rule holds without relying on a Deny: the staging Allow of tier T
/// names only the prefixes of tiers <= T (policies/README.md, "holds the
/// invariant twice"), and example-values.json follows the rule.
#[test]
fn runner_staging_resources_follow_the_documented_rule() {
    let values = example_values();
    assert_eq!(
        values["runner_staging_resources"],
        staging_resources(&values["bucket_arn"], TrustLevel::PullRequest),
        "example-values.json runner_staging_resources is not the pull-request tier's value"
    );
    for tier in TrustLevel::ALL {
        let runner = runner_policy(tier);
        let staging_allows: Vec<String> = runner["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Effect"] == "Allow")
            .flat_map(|s| as_list(&s["Resource"]))
            .filter(|r| r.starts_with(&format!("{BUCKET}/{STAGING_PREFIX}")))
            .collect();
        let expected: Vec<String> = TrustLevel::ALL
            .iter()
            .filter(|t| **t <= tier)
            .map(|t| format!("{BUCKET}/{STAGING_PREFIX}{t}/*"))
            .collect();
        assert_eq!(staging_allows, expected, "{tier} runner's staging Allow");
    }
}

#[test]
fn workers_can_promote_and_admins_can_invalidate() {
    let worker = policy("worker");
    assert!(allows(
        &worker,
        "s3:PutObject",
        &format!("{BUCKET}/artifacts/abc")
    ));
    assert!(allows(
        &worker,
        "s3:DeleteObject",
        &format!("{BUCKET}/staging/u1")
    ));
    assert!(allows(&worker, "dynamodb:PutItem", INDEX));
    assert!(allows(&worker, "dynamodb:PutItem", PROVENANCE));
    assert!(allows(
        &worker,
        "sqs:ReceiveMessage",
        &format!("{QUEUE}staged-dev")
    ));
    let admin = policy("admin");
    assert!(allows(
        &admin,
        "sqs:SendMessage",
        &format!("{QUEUE}invalidate-dev")
    ));
    assert!(!allows(
        &admin,
        "s3:PutObject",
        &format!("{BUCKET}/artifacts/abc")
    ));
    assert!(!allows(&admin, "dynamodb:PutItem", INDEX));
}

/// `runcache serve` holds the AWS credentials for runners that hold only a
/// token: a runner's rights for its tier `serve_max_trust`, plus deleting
/// (and reading back) the staged uploads it will not announce, and the
/// runner's explicit denies for everything else.
#[test]
fn serve_stages_up_to_its_tier_reads_the_cas_and_never_writes_it() {
    for tier in TrustLevel::ALL {
        server_stays_out_of_the_cas_index_and_provenance(tier);
    }
}

fn server_stays_out_of_the_cas_index_and_provenance(tier: TrustLevel) {
    let server = server_policy(tier);
    let obj = |k: &str| format!("{BUCKET}/{k}");
    for target in TrustLevel::ALL {
        for action in [
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts",
            "s3:DeleteObject",
        ] {
            assert_eq!(
                allows(&server, action, &staged(target, "0190-upload")),
                target <= tier,
                "serve of tier {tier}: {action} under staging/{target}/"
            );
        }
    }
    for key in [
        "staging/0190-upload",
        "staging/",
        "staging/admin/x",
        "staging/protectedx/y",
        "staging/untrusted",
        "other/x",
    ] {
        for action in ["s3:PutObject", "s3:DeleteObject"] {
            assert!(
                !allows(&server, action, &obj(key)),
                "serve of tier {tier} may {action} {key}"
            );
        }
    }
    assert!(allows(&server, "s3:GetObject", &obj("artifacts/abc")));
    assert!(allows(&server, "s3:GetObject", &obj("metadata/abc.json")));
    // Serve never reads back what it staged (the S3 adapter takes a put's
    // meta from the put's answer), so staged bytes stay unreadable to it.
    for target in TrustLevel::ALL {
        assert!(
            !allows(&server, "s3:GetObject", &staged(target, "0190-upload")),
            "serve of tier {tier} may read staging/{target}/"
        );
    }
    assert!(allows(&server, "dynamodb:GetItem", INDEX));
    // Exact-key lookups over a job's scopes in one call (build caches).
    assert!(allows(&server, "dynamodb:BatchGetItem", INDEX));
    assert!(allows(&server, "dynamodb:Query", INDEX));
    assert!(allows(
        &server,
        "dynamodb:Query",
        &format!("{INDEX}/index/repository-toolchain-index")
    ));
    assert!(allows(&server, "dynamodb:GetItem", PROVENANCE));
    for q in ["staged-dev", "accessed-dev"] {
        assert!(
            allows(&server, "sqs:SendMessage", &format!("{QUEUE}{q}")),
            "serve of tier {tier} cannot send to {q}"
        );
    }
    for key in [
        "artifacts/abc",
        "metadata/abc.json",
        "quarantine/u1",
        "quarantine/promoting/u1",
    ] {
        for action in ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"] {
            assert!(
                !allows(&server, action, &obj(key)),
                "serve of tier {tier} may {action} {key}"
            );
            assert!(
                denies(&server, action, &obj(key)),
                "serve of tier {tier}: no explicit Deny of {action} on {key}"
            );
        }
    }
    for key in [
        staged(tier, "u1"),
        obj("artifacts/abc"),
        obj("metadata/abc.json"),
    ] {
        for action in [
            "s3:DeleteObjectVersion",
            "s3:PutObjectAcl",
            "s3:PutBucketPolicy",
        ] {
            assert!(
                !allows(&server, action, &key),
                "serve of tier {tier} may {action} {key}"
            );
        }
    }
    for table in [INDEX, PROVENANCE] {
        for action in [
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:PartiQLInsert",
            "dynamodb:PartiQLUpdate",
            "dynamodb:PartiQLDelete",
        ] {
            assert!(
                !allows(&server, action, table),
                "serve of tier {tier} may {action} on {table}"
            );
            assert!(
                denies(&server, action, table),
                "serve of tier {tier}: no explicit Deny of {action} on {table}"
            );
        }
        assert!(
            !allows(&server, "dynamodb:DeleteTable", table),
            "serve of tier {tier} may delete {table}"
        );
    }
    for q in [
        "invalidate-dev",
        "staged-dev-dlq",
        "accessed-dev-dlq",
        "invalidate-dev-dlq",
    ] {
        assert!(
            !allows(&server, "sqs:SendMessage", &format!("{QUEUE}{q}")),
            "serve of tier {tier} may send to {q}"
        );
        assert!(
            denies(&server, "sqs:SendMessage", &format!("{QUEUE}{q}")),
            "serve of tier {tier}: no explicit Deny of sending to {q}"
        );
    }
    for q in [
        "staged-dev",
        "accessed-dev",
        "invalidate-dev",
        "staged-dev-dlq",
        "accessed-dev-dlq",
        "invalidate-dev-dlq",
    ] {
        for action in [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:PurgeQueue",
        ] {
            assert!(
                !allows(&server, action, &format!("{QUEUE}{q}")),
                "serve of tier {tier} may {action} on {q}"
            );
            assert!(
                denies(&server, action, &format!("{QUEUE}{q}")),
                "serve of tier {tier}: no explicit Deny of {action} on {q}"
            );
        }
    }
}

/// The server's staging Allows name exactly the prefixes of the tiers up to
/// its own (no Deny needed for the tiers above), and example-values.json
/// holds the rule's value for the branch tier.
#[test]
fn server_staging_resources_follow_the_documented_rule() {
    let values = example_values();
    assert_eq!(
        values["server_staging_resources"],
        staging_resources(&values["bucket_arn"], TrustLevel::Branch),
        "example-values.json server_staging_resources is not the branch tier's value"
    );
    let expected_for = |tier: TrustLevel| -> Vec<String> {
        TrustLevel::ALL
            .iter()
            .filter(|t| **t <= tier)
            .map(|t| format!("{BUCKET}/{STAGING_PREFIX}{t}/*"))
            .collect()
    };
    for tier in TrustLevel::ALL {
        let server = server_policy(tier);
        for s in server["Statement"].as_array().unwrap() {
            if s["Effect"] != "Allow" {
                continue;
            }
            let staging: Vec<String> = as_list(&s["Resource"])
                .into_iter()
                .filter(|r| r.starts_with(&format!("{BUCKET}/{STAGING_PREFIX}")))
                .collect();
            if !staging.is_empty() {
                assert_eq!(
                    staging,
                    expected_for(tier),
                    "serve of tier {tier}: staging resources of {}",
                    s["Sid"]
                );
            }
        }
    }
}

fn module_text() -> String {
    let mut text = String::new();
    for entry in fs::read_dir(terraform_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "tf") {
            text += &fs::read_to_string(path).unwrap();
        }
    }
    text
}

#[test]
fn terraform_uses_the_names_the_code_uses() {
    use runcache_infra::{metrics::names as metric, names};
    let tf = module_text();
    let stage = "${var.stage}";
    for name in [
        names::bucket(stage),
        names::index_table(stage),
        names::provenance_table(stage),
        names::staged_queue(stage),
        names::accessed_queue(stage),
        names::invalidate_queue(stage),
        names::metrics_namespace(stage),
    ] {
        assert!(
            tf.contains(&format!("\"{name}\"")),
            "terraform/ does not create `{name}`"
        );
    }
    for attr in [
        names::index_attrs::PARTITION_KEY,
        names::index_attrs::SORT_KEY,
        names::index_attrs::TTL,
        names::index_attrs::REPOSITORY_TOOLCHAIN_INDEX,
        names::index_attrs::LOCKFILE_INDEX,
        "repository",
        "toolchain",
        "lockfileHash",
        "contentHash",
        "uploadId",
    ] {
        assert!(
            tf.contains(&format!("\"{attr}\"")),
            "terraform/ does not define attribute `{attr}`"
        );
    }
    assert!(tf.contains("-dlq"), "DLQs are named `<queue>-dlq`");
    for m in metric::ALL
        .iter()
        .chain([&metric::DIM_REPOSITORY, &metric::DIM_WORKER])
    {
        assert!(
            tf.contains(&format!("\"{m}\"")) || tf.contains(m),
            "terraform/ never mentions metric `{m}`"
        );
    }
    for prefix in [
        names::STAGING_PREFIX,
        names::ARTIFACTS_PREFIX,
        names::QUARANTINE_PREFIX,
        names::METADATA_PREFIX,
    ] {
        let bare = prefix.trim_end_matches('/');
        assert!(
            tf.contains(&format!("\"{prefix}\"")) || tf.contains(&format!("\"{bare}\"")),
            "no lifecycle rule for `{prefix}`"
        );
    }
    for env in [
        "RUNCACHE_BACKEND",
        "RUNCACHE_STAGE",
        "RUNCACHE_BUCKET",
        "RUNCACHE_INDEX_TABLE",
        "RUNCACHE_PROVENANCE_TABLE",
        "RUNCACHE_STAGED_QUEUE",
        "RUNCACHE_ACCESSED_QUEUE",
        "RUNCACHE_INVALIDATE_QUEUE",
        "RUNCACHE_METRICS_NAMESPACE",
        "RUNCACHE_MAX_TRUST",
    ] {
        assert!(tf.contains(env), "terraform outputs lack {env}");
    }
}

/// The module's tiers are the code's, in the code's order (lowest first),
/// and iam.tf builds the staging resources as `runner_policy` does.
#[test]
fn terraform_runner_tiers_are_the_codes_trust_levels() {
    let tf = module_text();
    let list = TrustLevel::ALL
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        tf.contains(&format!("runner_tiers = [{list}]")),
        "iam.tf's runner_tiers is not [{list}]"
    );
    // Every validation of a tier variable lists the same tiers.
    let validations = tf.matches(&format!("contains([{list}]")).count();
    assert!(
        validations >= 3,
        "expected the tier validations of runner_role_names, runner_instance_tier and github_oidc to list [{list}], found {validations}"
    );
    assert!(
        tf.contains(&format!(
            "\"${{aws_s3_bucket.artifacts.arn}}/{STAGING_PREFIX}${{t}}/*\""
        )),
        "iam.tf does not build the runner staging resources as {{bucket_arn}}/{STAGING_PREFIX}{{tier}}/*"
    );
}

fn tf_file(name: &str) -> String {
    fs::read_to_string(terraform_dir().join(name)).unwrap()
}

/// `s` with every run of whitespace as one space (`terraform fmt` aligns
/// the `=` of neighbouring lines).
fn squeezed(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The top-level blocks of a .tf file, each from its header line to the
/// next top-level block (comments in between go with the block before).
fn blocks(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if [
            "resource \"",
            "data \"",
            "variable \"",
            "output \"",
            "locals {",
        ]
        .iter()
        .any(|p| line.starts_with(p))
        {
            out.push(String::new());
        }
        if let Some(block) = out.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    out
}

/// `runcache serve` on ECS (serve.tf): nothing of it exists unless
/// `serve_enabled`, so existing deployments plan unchanged; it runs the
/// flags `runcache serve` has, behind the load balancer the brief of
/// docs/serve.md asks for; and its tier follows the runner tiers' rule.
#[test]
fn terraform_serve_is_optional_and_runs_the_flags_the_cli_has() {
    let serve = tf_file("serve.tf");
    for block in blocks(&serve) {
        let header = block.lines().next().unwrap_or_default();
        if header.starts_with("resource \"") || header.starts_with("data \"") {
            assert!(
                block.contains("local.serve_count") || block.contains("var.serve_enabled"),
                "serve.tf: `{header}` is not gated by serve_enabled"
            );
        }
    }
    for block in blocks(&tf_file("iam.tf")) {
        let header = block.lines().next().unwrap_or_default();
        if (header.starts_with("resource \"") || header.starts_with("data \""))
            && (header.contains("\"serve") || header.contains("\"server"))
        {
            assert!(
                block.contains("var.serve_enabled"),
                "iam.tf: `{header}` is not gated by serve_enabled"
            );
        }
    }
    let enabled = blocks(&tf_file("variables.tf"))
        .into_iter()
        .find(|b| b.starts_with("variable \"serve_enabled\""))
        .expect("variables.tf has no serve_enabled");
    assert!(
        squeezed(&enabled).contains("type = bool default = false"),
        "serve_enabled must default to false"
    );

    // Every flag serve.tf passes is a field of `runcache serve`'s ServeArgs.
    let main_rs = fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../producer/src/main.rs"),
    )
    .unwrap();
    let start = main_rs
        .find("struct ServeArgs {")
        .expect("producer/src/main.rs has no ServeArgs");
    let args = &main_rs[start..];
    let args = &args[..args.find("\n}").expect("end of ServeArgs")];
    let flags: Vec<&str> = serve
        .split("\"--")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    for required in ["listen", "public-url", "tokens", "spool-dir"] {
        assert!(
            flags.contains(&required),
            "serve.tf does not pass --{required}"
        );
    }
    for flag in &flags {
        let field = format!("{}:", flag.replace('-', "_"));
        assert!(
            args.contains(&field),
            "serve.tf passes --{flag}, which `runcache serve` (ServeArgs in producer/src/main.rs) does not have"
        );
    }

    let flat = squeezed(&serve);
    for expected in [
        "serve_port = 8080",
        "\"runcache\", \"serve\", \"--listen\", \"0.0.0.0:${local.serve_port}\"",
        "cluster = aws_ecs_cluster.workers.id",
        "RUNCACHE_MAX_TRUST = var.serve_max_trust",
        "size_in_gib = var.serve_ephemeral_storage_gib",
        "internal = true",
        "drop_invalid_header_fields = true",
        "port = 443 protocol = \"HTTPS\" ssl_policy = \"ELBSecurityPolicy-TLS13-1-2-2021-06\"",
        "path = \"/healthz\" matcher = \"200\"",
    ] {
        assert!(flat.contains(expected), "serve.tf lacks `{expected}`");
    }
    // The target group checks serve's own health route.
    let server_src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let serves_healthz = fs::read_dir(server_src).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        path.extension().is_some_and(|e| e == "rs")
            && fs::read_to_string(&path).unwrap().contains("\"/healthz\"")
    });
    assert!(
        serves_healthz,
        "server/src no longer routes /healthz: point serve.tf's health check at what it serves"
    );

    // serve_max_trust is a tier, and the server's staging resources and the
    // bucket policy's staging writers follow the runner tiers' rule.
    let tf = module_text();
    let list = TrustLevel::ALL
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        tf.contains(&format!("contains([{list}], var.serve_max_trust)")),
        "serve_max_trust is not validated against [{list}]"
    );
    assert!(
        tf.contains(&format!(
            "local.runner_tier_staging[var.serve_max_trust] : \"${{aws_s3_bucket.artifacts.arn}}/{STAGING_PREFIX}${{t}}/*\""
        )),
        "iam.tf does not build the server staging resources as a runner's of tier serve_max_trust"
    );
    assert!(
        tf.contains(
            "index(local.runner_tiers, var.serve_max_trust) >= index(local.runner_tiers, tier)"
        ),
        "the bucket policy does not admit the serve role under staging/{{t}}/ for t <= serve_max_trust"
    );
}

// --- the dashboard and the alarms graph what the workers emit ----------------

const METRICS_RS: &str = "workers/src/metrics.rs";
const SERVICE_RS: &str = "workers/src/service.rs";

/// What the workers emit, read off the code: (metric, its constant in
/// `runcache_infra::metrics::names`, the one dimension set it is emitted
/// with, the file that builds it). Every datum of workers/src/metrics.rs
/// goes through its `fn datum`, which adds exactly `Repository`
/// (`access_datums`, `outcome_datums`, `publish_gauges`); workers/src/
/// service.rs's `count_error` emits `WorkerErrors` with exactly `Worker`.
/// Nothing is emitted without dimensions.
const EMITTED: &[(&str, &str, &[&str], &str)] = {
    use metric_names::*;
    const REPO: &[&str] = &[DIM_REPOSITORY];
    &[
        (CACHE_HIT, "CACHE_HIT", REPO, METRICS_RS),
        (CACHE_MISS, "CACHE_MISS", REPO, METRICS_RS),
        (HIT_RATE, "HIT_RATE", REPO, METRICS_RS),
        (RESTORE_DURATION, "RESTORE_DURATION", REPO, METRICS_RS),
        (BYTES_RESTORED, "BYTES_RESTORED", REPO, METRICS_RS),
        (BUILD_TIME_SAVED, "BUILD_TIME_SAVED", REPO, METRICS_RS),
        (ARTIFACTS_PROMOTED, "ARTIFACTS_PROMOTED", REPO, METRICS_RS),
        (
            ARTIFACTS_DEDUPLICATED,
            "ARTIFACTS_DEDUPLICATED",
            REPO,
            METRICS_RS,
        ),
        (PROMOTION_LATENCY, "PROMOTION_LATENCY", REPO, METRICS_RS),
        (BYTES_SAVED, "BYTES_SAVED", REPO, METRICS_RS),
        (UPLOADS_REJECTED, "UPLOADS_REJECTED", REPO, METRICS_RS),
        (EVICTIONS, "EVICTIONS", REPO, METRICS_RS),
        (INVALIDATIONS, "INVALIDATIONS", REPO, METRICS_RS),
        (STORAGE_BYTES, "STORAGE_BYTES", REPO, METRICS_RS),
        (OBJECT_COUNT, "OBJECT_COUNT", REPO, METRICS_RS),
        (AVERAGE_CACHE_AGE, "AVERAGE_CACHE_AGE", REPO, METRICS_RS),
        (WORKER_ERRORS, "WORKER_ERRORS", &[DIM_WORKER], SERVICE_RS),
    ]
};

/// Names in `names::ALL` that no worker emits (no file of workers/src uses
/// the constant): a widget or alarm on them would stay empty.
const NOT_EMITTED: &[(&str, &str)] = &[(metric_names::SAVE_DURATION, "SAVE_DURATION")];

/// AWS's own metrics the module may graph or alarm on, with the dimension
/// set it uses them with. To use another, check its name and dimensions in
/// AWS's documentation and add it here.
const AWS_METRICS: &[(&str, &str, &[&str])] = &[
    ("AWS/S3", "BucketSizeBytes", &["BucketName", "StorageType"]),
    ("AWS/S3", "NumberOfObjects", &["BucketName", "StorageType"]),
    (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        &["QueueName"],
    ),
    (
        "AWS/SQS",
        "ApproximateNumberOfMessagesNotVisible",
        &["QueueName"],
    ),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage", &["QueueName"]),
    (
        "ECS/ContainerInsights",
        "RunningTaskCount",
        &["ClusterName", "ServiceName"],
    ),
];

/// How a widget or alarm names a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `[namespace, name, dim, value, ..., { options }]` in a widget.
    Array,
    /// `SEARCH('{namespace,dims} MetricName="name"', ...)`.
    Search,
    /// Metrics Insights: `SELECT f(name) FROM SCHEMA("namespace", dims)`.
    Insights,
    /// `namespace`/`metric_name`/`dimensions` of an alarm or its `metric {}`.
    AlarmMetric,
}

/// One metric reference found in the .tf text.
#[derive(Debug, Clone)]
struct MetricRef {
    /// The widget or alarm, for messages.
    place: String,
    /// `None` for the workers' namespace (`local.ns`), else the literal.
    namespace: Option<String>,
    name: String,
    /// Dimension names, sorted; `None` if the query matches any set.
    dims: Option<Vec<String>>,
    via: Via,
    /// The text it was read from.
    text: String,
}

/// `text` without its whole-line `#` comments.
fn code_only(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The top-level items of the HCL list, tuple or object that opens at
/// `text[open]`, split at commas (and at newlines if `newlines`), trimmed,
/// empty ones dropped; and the index just past its closing bracket. Knows
/// strings, `${...}` inside them and `#` comments.
fn hcl_items(text: &str, open: usize, newlines: bool) -> Option<(Vec<String>, usize)> {
    #[derive(PartialEq)]
    enum Ctx {
        Code,
        Str,
        Interp,
    }
    let b = text.as_bytes();
    if !matches!(b.get(open), Some(b'[' | b'(' | b'{')) {
        return None;
    }
    fn push(items: &mut Vec<String>, s: &str) {
        if !s.trim().is_empty() {
            items.push(s.trim().to_string());
        }
    }
    let mut stack = vec![Ctx::Code];
    let (mut items, mut start, mut i) = (Vec::new(), open + 1, open + 1);
    while i < b.len() {
        let c = b[i];
        if *stack.last()? == Ctx::Str {
            match c {
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                b'$' if b.get(i + 1) == Some(&b'{') => {
                    stack.push(Ctx::Interp);
                    i += 1;
                }
                _ => {}
            }
        } else {
            match c {
                b'"' => stack.push(Ctx::Str),
                b'#' => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                    continue;
                }
                b'[' | b'(' | b'{' => stack.push(Ctx::Code),
                b']' | b')' | b'}' => {
                    stack.pop();
                    if stack.is_empty() {
                        push(&mut items, &text[start..i]);
                        return Some((items, i + 1));
                    }
                }
                b',' if stack.len() == 1 => {
                    push(&mut items, &text[start..i]);
                    start = i + 1;
                }
                b'\n' if newlines && stack.len() == 1 => {
                    push(&mut items, &text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The inside of a `"..."` HCL string literal without interpolation.
fn literal(item: &str) -> Option<&str> {
    let s = item.trim().strip_prefix('"')?.strip_suffix('"')?;
    (!s.contains("${") && !s.contains('"')).then_some(s)
}

/// `\"` as `"`: the text of a query inside an HCL string.
fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"")
}

/// The namespace a token names: `Ok(None)` for the workers' (`local.ns`),
/// `Ok(Some(literal))`, or `Err` for anything else.
fn namespace_of(token: &str) -> Result<Option<String>, String> {
    let t = token.trim();
    let t = t
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(t)
        .trim();
    match t {
        "local.ns" | "${local.ns}" => Ok(None),
        _ if !t.is_empty() && !t.contains("${") && !t.contains('"') && !t.starts_with("local.")
            && !t.starts_with("var.") =>
        {
            Ok(Some(t.to_string()))
        }
        _ => Err(format!(
            "namespace `{token}` is neither `local.ns` (the workers' namespace) nor a literal AWS namespace"
        )),
    }
}

/// Dimension names from a SEARCH schema or a Metrics Insights SCHEMA(),
/// sorted.
fn dim_names<'a>(parts: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut dims: Vec<String> = parts
        .map(|d| d.trim().trim_matches('"').trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    dims.sort();
    dims
}

/// The HCL string that starts at `text[start]` (just after its opening
/// quote), up to its closing unescaped quote.
fn string_from(text: &str, start: usize) -> &str {
    let b = text.as_bytes();
    let mut i = start;
    while i < b.len() && b[i] != b'"' {
        if b[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    &text[start..i.min(b.len())]
}

/// Every metric that `text` (a widget or an alarm, raw .tf) names in a
/// SEARCH or a Metrics Insights query; problems go to `problems`.
fn query_refs(text: &str, place: &str, problems: &mut Vec<String>) -> Vec<MetricRef> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("SEARCH('") {
        let rest = &text[at + "SEARCH('".len()..];
        let query = unescape(&rest[..rest.find('\'').unwrap_or(rest.len())]);
        let shown = format!("SEARCH('{query}')");
        let (namespace, dims, terms) = match query.trim_start().strip_prefix('{') {
            Some(schema) => {
                // The schema's `}`, not the one of `${local.ns}` in it.
                let b = schema.as_bytes();
                let mut end = 0;
                while end < b.len() && b[end] != b'}' {
                    end += if b[end..].starts_with(b"${") {
                        b[end..]
                            .iter()
                            .position(|c| *c == b'}')
                            .map_or(1, |e| e + 1)
                    } else {
                        1
                    };
                }
                let mut parts = schema[..end].split(',');
                let ns = namespace_of(parts.next().unwrap_or_default());
                (ns, Some(dim_names(parts)), &schema[end..])
            }
            None => {
                let ns = query
                    .split("Namespace=\"")
                    .nth(1)
                    .map(|r| namespace_of(&r[..r.find('"').unwrap_or(r.len())]))
                    .unwrap_or_else(|| Err("no namespace".into()));
                (ns, None, query.as_str())
            }
        };
        let Some(name) = terms
            .split("MetricName=\"")
            .nth(1)
            .map(|r| &r[..r.find('"').unwrap_or(r.len())])
        else {
            problems.push(format!(
                "{place}: `{shown}` names no MetricName=\"...\": search for one metric name"
            ));
            continue;
        };
        match namespace {
            Ok(namespace) => out.push(MetricRef {
                place: place.into(),
                namespace,
                name: name.into(),
                dims,
                via: Via::Search,
                text: shown,
            }),
            Err(e) => problems.push(format!(
                "{place}: `{shown}`: {e}; write SEARCH('{{${{local.ns}},Repository}} MetricName=\"...\"', ...)"
            )),
        }
    }
    for (at, _) in text.match_indices("SELECT ") {
        let query = unescape(string_from(text, at));
        let shown = query.clone();
        let select = &query["SELECT ".len()..];
        let name = select
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(n, _)| n.trim().trim_matches('"').to_string());
        let from = query.split_once(" FROM ").map(|(_, r)| r.trim_start());
        let (Some(name), Some(from)) = (name, from) else {
            problems.push(format!(
                "{place}: cannot read the metric of the Metrics Insights query `{shown}`"
            ));
            continue;
        };
        let (namespace, dims) = match from.strip_prefix("SCHEMA(") {
            Some(schema) => {
                let mut parts = schema[..schema.find(')').unwrap_or(schema.len())].split(',');
                (
                    namespace_of(parts.next().unwrap_or_default()),
                    Some(dim_names(parts)),
                )
            }
            None => (
                namespace_of(from.split_whitespace().next().unwrap_or_default()),
                None,
            ),
        };
        if let (Some(dims), Some((_, group))) = (&dims, query.split_once(" GROUP BY ")) {
            let group = group.split(" ORDER BY ").next().unwrap_or_default();
            let group = group.split(" LIMIT ").next().unwrap_or_default();
            for g in group.split(',').map(str::trim) {
                if !dims.iter().any(|d| d == g) {
                    problems.push(format!(
                        "{place}: `{shown}` groups by `{g}`, which is not in its SCHEMA(..., {})",
                        dims.join(", ")
                    ));
                }
            }
        }
        match namespace {
            Ok(namespace) => out.push(MetricRef {
                place: place.into(),
                namespace,
                name,
                dims,
                via: Via::Insights,
                text: shown,
            }),
            Err(e) => problems.push(format!(
                "{place}: `{shown}`: {e}; write FROM SCHEMA(\\\"${{local.ns}}\\\", Repository)"
            )),
        }
    }
    out
}

/// Every `[namespace, name, dim, value, ..., {options}]` metric array in a
/// widget's text.
fn array_refs(text: &str, place: &str, problems: &mut Vec<String>) -> Vec<MetricRef> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices('[') {
        let Some((items, _)) = hcl_items(text, at, false) else {
            continue;
        };
        let [first, second, ..] = items.as_slice() else {
            continue;
        };
        let namespace_like = first == "local.ns"
            || first == "\"${local.ns}\""
            || literal(first).is_some_and(|l| l.contains('/') || l == ".");
        let Some(name) = literal(second).filter(|_| namespace_like) else {
            continue;
        };
        let shown = format!("[{}]", items.join(", "));
        if first == "\".\"" || name == "." {
            problems.push(format!(
                "{place}: `{shown}` uses the \".\" shorthand; spell the namespace and name out"
            ));
            continue;
        }
        let dim_items: Vec<&String> = items[2..]
            .iter()
            .take_while(|i| !i.starts_with('{'))
            .collect();
        if !dim_items.len().is_multiple_of(2) {
            problems.push(format!(
                "{place}: `{shown}` has a dimension without a value"
            ));
            continue;
        }
        let mut dims = Vec::new();
        for d in dim_items.iter().step_by(2) {
            match literal(d) {
                Some(d) => dims.push(d.to_string()),
                None => problems.push(format!(
                    "{place}: `{shown}`: dimension name {d} is not a literal string"
                )),
            }
        }
        dims.sort();
        match namespace_of(first) {
            Ok(namespace) => out.push(MetricRef {
                place: place.into(),
                namespace,
                name: name.into(),
                dims: Some(dims),
                via: Via::Array,
                text: shown,
            }),
            Err(e) => problems.push(format!("{place}: `{shown}`: {e}")),
        }
    }
    out
}

/// Where the value of the first attribute `key = value` that starts a line
/// of `text` starts.
fn attribute_at(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let value = line.trim_start().strip_prefix(key).map(str::trim_start);
        if let Some(value) = value.and_then(|v| v.strip_prefix('=')) {
            return Some(offset + line.len() - value.trim_start().len());
        }
        offset += line.len();
    }
    None
}

/// The value of the first attribute `key = value` that starts a line of
/// `text`: a string literal with its quotes, or the expression up to the
/// end of the line.
fn attribute(text: &str, key: &str) -> Option<String> {
    let value = &text[attribute_at(text, key)?..];
    Some(match value.strip_prefix('"') {
        Some(s) => format!("\"{}\"", string_from(s, 0)),
        None => value
            .lines()
            .next()
            .unwrap_or_default()
            .split(" #")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
    })
}

/// The nested blocks `name { ... }` of `text`, each with its range.
fn nested_blocks(text: &str, name: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices(&format!("{name} {{")) {
        let starts_line = text[..at]
            .rsplit('\n')
            .next()
            .is_some_and(|l| l.trim().is_empty());
        let open = at + name.len() + 1;
        if let (true, Some((_, end))) = (starts_line, hcl_items(text, open, true)) {
            out.push((at, end));
        }
    }
    out
}

/// The metrics of one alarm: `namespace`, `metric_name` and `dimensions` at
/// its top level or in its `metric {}` blocks, and Metrics Insights queries
/// of its `metric_query` blocks.
fn alarm_refs(block: &str, place: &str, problems: &mut Vec<String>) -> Vec<MetricRef> {
    let mut scopes: Vec<String> = nested_blocks(block, "metric")
        .into_iter()
        .map(|(a, b)| block[a..b].to_string())
        .collect();
    let mut top = block.to_string();
    for (a, b) in nested_blocks(block, "metric_query").into_iter().rev() {
        top.replace_range(a..b, "");
    }
    scopes.push(top);
    let mut out = Vec::new();
    for scope in scopes {
        let Some(name) = attribute(&scope, "metric_name") else {
            continue;
        };
        let Some(name) = literal(&name).map(String::from) else {
            problems.push(format!(
                "{place}: metric_name {name} is not a literal string"
            ));
            continue;
        };
        let namespace = match attribute(&scope, "namespace").map(|n| namespace_of(&n)) {
            Some(Ok(ns)) => ns,
            Some(Err(e)) => {
                problems.push(format!("{place}: {name}: {e}"));
                continue;
            }
            None => {
                problems.push(format!("{place}: {name} has no namespace"));
                continue;
            }
        };
        let mut dims = Vec::new();
        if let Some(at) = attribute_at(&scope, "dimensions") {
            match hcl_items(&scope, at, true) {
                Some((items, _)) => {
                    for item in items {
                        let key = item.split('=').next().unwrap_or_default().trim();
                        dims.push(key.trim_matches('"').to_string());
                    }
                }
                None => problems.push(format!("{place}: cannot read the dimensions of {name}")),
            }
        }
        dims.sort();
        out.push(MetricRef {
            place: place.into(),
            namespace,
            text: format!("metric_name = \"{name}\""),
            name,
            dims: Some(dims),
            via: Via::AlarmMetric,
        });
    }
    for r in query_refs(block, place, problems) {
        if r.via == Via::Search {
            problems.push(format!(
                "{place}: `{}`: alarms cannot use SEARCH; use a Metrics Insights query",
                r.text
            ));
        } else {
            out.push(r);
        }
    }
    out
}

/// Whether `r` names a metric the code emits, with the dimensions it emits
/// it with; a problem for the message if not.
fn check_ref(r: &MetricRef) -> Result<(), String> {
    let dims = r.dims.clone().unwrap_or_default();
    let Some(namespace) = &r.namespace else {
        if !metric_names::ALL.contains(&r.name.as_str()) {
            return Err(format!(
                "{}: `{}` (in `{}`) is not a metric name of the code (runcache_infra::metrics::names::ALL: {}); use one of those",
                r.place,
                r.name,
                r.text,
                metric_names::ALL.join(", ")
            ));
        }
        let Some((_, _, want, file)) = EMITTED.iter().find(|(n, ..)| *n == r.name) else {
            return Err(format!(
                "{}: `{}` (in `{}`) is published by no worker (see NOT_EMITTED in tests/tests/terraform.rs), so this would stay empty; drop it, or emit it from workers/src first",
                r.place, r.name, r.text
            ));
        };
        let mut want: Vec<String> = want.iter().map(|d| d.to_string()).collect();
        want.sort();
        return match &r.dims {
            None => Err(format!(
                "{}: `{}` matches `{}` with any dimension set; the workers emit it only with {want:?} ({file}): select that schema, e.g. {{${{local.ns}},{}}} or SCHEMA(\"${{local.ns}}\", {})",
                r.place, r.text, r.name, want.join(","), want.join(", ")
            )),
            Some(d) if *d != want => Err(format!(
                "{}: `{}` uses `{}` with dimensions {d:?}, but the workers emit it only with {want:?} ({file}); CloudWatch matches dimension sets exactly, so this would stay empty",
                r.place, r.text, r.name
            )),
            Some(_) => Ok(()),
        };
    };
    let Some((_, _, want)) = AWS_METRICS
        .iter()
        .find(|(ns, n, _)| ns == namespace && *n == r.name)
    else {
        return Err(format!(
            "{}: {namespace} `{}` (in `{}`) is not in AWS_METRICS, the allow-list of AWS metrics in tests/tests/terraform.rs; if the namespace is meant to be the workers', use local.ns, else check the name in AWS's documentation and add it",
            r.place, r.name, r.text
        ));
    };
    let mut want: Vec<String> = want.iter().map(|d| d.to_string()).collect();
    want.sort();
    if dims != want {
        return Err(format!(
            "{}: `{}` uses {namespace} `{}` with dimensions {:?}; AWS_METRICS (tests/tests/terraform.rs) has it with {want:?}: use those",
            r.place, r.text, r.name, r.dims
        ));
    }
    Ok(())
}

/// A widget of the dashboard: its type, title and raw text.
struct Widget {
    kind: String,
    title: String,
    text: String,
}

/// The widgets of `local.dashboard_widgets` in dashboard.tf, each from its
/// `type = "..."` line to the next one.
fn dashboard_widgets(dashboard: &str) -> Vec<Widget> {
    let start = dashboard
        .find("dashboard_widgets")
        .expect("dashboard.tf has no local.dashboard_widgets");
    let end = dashboard
        .find("resource \"aws_cloudwatch_dashboard\"")
        .expect("dashboard.tf has no aws_cloudwatch_dashboard");
    let mut widgets: Vec<Widget> = Vec::new();
    for line in dashboard[start..end].lines() {
        let kind = line
            .trim_start()
            .strip_prefix("type")
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix('='))
            .and_then(|r| r.trim_start().strip_prefix('"'))
            .and_then(|r| r.split('"').next());
        if let Some(kind) = kind {
            widgets.push(Widget {
                kind: kind.to_string(),
                title: String::new(),
                text: String::new(),
            });
        }
        if let Some(w) = widgets.last_mut() {
            w.text.push_str(line);
            w.text.push('\n');
        }
    }
    for w in &mut widgets {
        w.title = attribute(&w.text, "title")
            .map(|t| t.trim_matches('"').to_string())
            .unwrap_or_else(|| format!("(untitled {} widget)", w.kind));
    }
    widgets
}

/// Every widget and alarm names a metric the workers emit, with the
/// dimensions they emit it with (or one of a few AWS metrics); and the
/// dashboard covers the figures of issue #18.
#[test]
fn every_dashboard_widget_and_alarm_uses_a_metric_the_workers_emit() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems: Vec<String> = Vec::new();

    // The tables above follow the code.
    for name in metric_names::ALL {
        let listed = EMITTED.iter().filter(|(n, ..)| *n == name).count()
            + NOT_EMITTED.iter().filter(|(n, _)| *n == name).count();
        if listed != 1 {
            problems.push(format!(
                "`{name}` of names::ALL is listed {listed} times in EMITTED/NOT_EMITTED (tests/tests/terraform.rs): list it once, with the dimensions the workers emit it with"
            ));
        }
    }
    for (name, ident, dims, file) in EMITTED {
        let src = fs::read_to_string(root.join(file)).unwrap();
        if !metric_names::ALL.contains(name) || !src.contains(ident) {
            problems.push(format!(
                "EMITTED says {file} emits `{name}` ({ident}), but it does not name {ident}: update EMITTED from workers/src"
            ));
        }
        let dim_const = if *dims == [metric_names::DIM_WORKER] {
            "with_dimension(DIM_WORKER"
        } else {
            "with_dimension(DIM_REPOSITORY"
        };
        if !src.contains(dim_const) {
            problems.push(format!(
                "EMITTED says {file} emits `{name}` with {dims:?}, but it has no `{dim_const}`: update EMITTED from workers/src"
            ));
        }
    }
    for (name, ident) in NOT_EMITTED {
        for entry in fs::read_dir(root.join("workers/src")).unwrap() {
            let path = entry.unwrap().path();
            if fs::read_to_string(&path).unwrap().contains(ident) {
                problems.push(format!(
                    "{} uses {ident}: move `{name}` from NOT_EMITTED to EMITTED (tests/tests/terraform.rs) with its dimensions",
                    path.display()
                ));
            }
        }
    }

    // The dashboard's widgets, with local.search expanded.
    let dashboard = tf_file("dashboard.tf");
    assert!(
        dashboard.contains("jsonencode({ widgets = local.dashboard_widgets })"),
        "the dashboard's body is no longer local.dashboard_widgets: point this test at what it deploys"
    );
    let template = dashboard
        .find(": m => \"")
        .map(|at| string_from(&dashboard, at + ": m => \"".len()))
        .expect(
            "dashboard.tf: local.search is no longer `{ for m in [...] : m => \"SEARCH(...)\" }`",
        );
    let listed = dashboard
        .split_once("for m in [")
        .and_then(|(_, r)| r.split_once("] : m =>"))
        .map(|(l, _)| {
            l.split(',')
                .filter_map(|m| literal(m).map(String::from))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let repo_schema = attribute(&dashboard, "repo_schema")
        .map(|s| s.trim_matches('"').to_string())
        .expect("dashboard.tf has no local.repo_schema");
    let expand = |m: &str| {
        template
            .replace("${local.repo_schema}", &repo_schema)
            .replace("${m}", m)
    };
    let mut refs: Vec<MetricRef> = Vec::new();
    for m in &listed {
        refs.extend(query_refs(
            &expand(m),
            "dashboard.tf local.search",
            &mut problems,
        ));
    }
    let widgets = dashboard_widgets(&dashboard);
    let mut widget_refs: Vec<MetricRef> = Vec::new();
    for w in &widgets {
        if w.kind != "metric" {
            continue;
        }
        let place = format!("dashboard.tf widget \"{}\"", w.title);
        let mut text = code_only(&w.text);
        while let Some(at) = text.find("local.search[\"") {
            let rest = &text[at + "local.search[\"".len()..];
            let m = rest[..rest.find('"').unwrap_or(rest.len())].to_string();
            if !listed.contains(&m) {
                problems.push(format!(
                    "{place}: local.search[\"{m}\"] is not in local.search's list in dashboard.tf: add it there"
                ));
            }
            let end = at + "local.search[\"".len() + m.len() + "\"]".len();
            text.replace_range(at..end.min(text.len()), &expand(&m));
        }
        let mut found = array_refs(&text, &place, &mut problems);
        found.extend(query_refs(&text, &place, &mut problems));
        if found.is_empty() && !text.contains("insightRule") {
            problems.push(format!(
                "{place}: no metric found in this metric widget; write its metrics as [local.ns or \"AWS/...\", \"Name\", dims...], SEARCH('{{...}} MetricName=\"...\"') or SELECT ... FROM SCHEMA(...) so that this test can check them"
            ));
        }
        widget_refs.extend(found);
    }
    assert!(
        !widget_refs.is_empty(),
        "found no metric in dashboard.tf's widgets: this test's parsing no longer fits dashboard.tf"
    );
    refs.extend(widget_refs.iter().cloned());

    // Every aws_cloudwatch_metric_alarm of the module.
    let mut alarms = 0;
    let mut alarm_refs_found = 0;
    let mut monitoring_alarms: Vec<String> = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir(terraform_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        for block in blocks(&fs::read_to_string(&path).unwrap()) {
            let Some(rest) = block.strip_prefix("resource \"aws_cloudwatch_metric_alarm\" \"")
            else {
                continue;
            };
            let name = &rest[..rest.find('"').unwrap_or(0)];
            let place = format!("{file} alarm {name}");
            alarms += 1;
            if file == "monitoring.tf" {
                monitoring_alarms.push(name.to_string());
            }
            let found = alarm_refs(&code_only(&block), &place, &mut problems);
            if found.is_empty() {
                problems.push(format!(
                    "{place}: no metric found; give it namespace/metric_name/dimensions, metric {{}} blocks or a SELECT ... FROM SCHEMA(...) query"
                ));
            }
            alarm_refs_found += found.len();
            refs.extend(found);
        }
    }
    assert!(
        alarms > 0 && alarm_refs_found > 0,
        "found no alarm metric in terraform/*.tf: this test's parsing no longer fits the module"
    );

    for r in &refs {
        if let Err(e) = check_ref(r) {
            problems.push(e);
        }
    }

    // The figures the dashboard must show (issue #18), each by its metric.
    let ours = |r: &MetricRef, name: &str| r.namespace.is_none() && r.name == name;
    type Figure<'a> = (&'a str, &'a str, Box<dyn Fn(&MetricRef) -> bool + 'a>);
    let figures: Vec<Figure> = vec![
        (
            "cache hit rate over time, per repository",
            "a SEARCH of HitRate over {local.ns,Repository} (one line per repository)",
            Box::new(|r: &MetricRef| ours(r, metric_names::HIT_RATE) && r.via == Via::Search),
        ),
        (
            "cache storage growth (stored bytes over time)",
            "StorageBytes",
            Box::new(|r: &MetricRef| ours(r, metric_names::STORAGE_BYTES)),
        ),
        (
            "build time saved (a hit against rebuilding on a miss)",
            "BuildTimeSaved",
            Box::new(|r: &MetricRef| ours(r, metric_names::BUILD_TIME_SAVED)),
        ),
        (
            "the most frequently accessed",
            "a Metrics Insights ranking (ORDER BY) of CacheHit",
            Box::new(|r: &MetricRef| {
                ours(r, metric_names::CACHE_HIT)
                    && r.via == Via::Insights
                    && r.text.contains("ORDER BY")
            }),
        ),
        (
            "evictions",
            "Evictions",
            Box::new(|r: &MetricRef| ours(r, metric_names::EVICTIONS)),
        ),
        (
            "invalidations",
            "Invalidations",
            Box::new(|r: &MetricRef| ours(r, metric_names::INVALIDATIONS)),
        ),
        (
            "quarantined (rejected) uploads",
            "UploadsRejected",
            Box::new(|r: &MetricRef| ours(r, metric_names::UPLOADS_REJECTED)),
        ),
        (
            "dead-lettered messages",
            "AWS/SQS ApproximateNumberOfMessagesVisible of the <queue>-dlq queues",
            Box::new(|r: &MetricRef| {
                r.namespace.as_deref() == Some("AWS/SQS")
                    && r.name == "ApproximateNumberOfMessagesVisible"
                    && r.text.contains("dlq")
            }),
        ),
    ];
    for (figure, needs, shows) in &figures {
        if !widget_refs.iter().any(shows) {
            problems.push(format!(
                "the dashboard has no widget for {figure}: add one with {needs} (and a row in docs/deploy.md \"Read the dashboard\")"
            ));
        }
    }
    if !widgets
        .iter()
        .any(|w| w.kind == "alarm" && w.text.contains("local.paging_alarm_arns"))
    {
        problems.push("the dashboard has no alarm widget showing local.paging_alarm_arns".into());
    }
    let monitoring = tf_file("monitoring.tf");
    let paging = monitoring
        .split_once("paging_alarm_arns")
        .map(|(_, r)| r)
        .unwrap_or_default();
    for name in &monitoring_alarms {
        if !paging.contains(&format!("aws_cloudwatch_metric_alarm.{name}")) {
            problems.push(format!(
                "monitoring.tf alarm {name} is not in local.paging_alarm_arns, so the dashboard's alarm widget does not show it"
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "{} problem(s) with the metrics of terraform/'s dashboard and alarms ({} references checked; what the workers emit is EMITTED in tests/tests/terraform.rs):\n- {}",
        problems.len(),
        refs.len(),
        problems.join("\n- ")
    );
}
