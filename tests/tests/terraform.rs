//! Static checks of `terraform/`, which cannot be planned here: the IAM
//! policy templates, rendered and evaluated, keep runners out of everything
//! but staging, and each runner trust tier out of higher tiers' staging
//! prefixes; and every name the code relies on appears in the module.

use std::{collections::BTreeMap, fs, path::PathBuf};

use runcache_infra::names::STAGING_PREFIX;
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
