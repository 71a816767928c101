//! Static checks of `terraform/`, which cannot be planned here: the IAM
//! policy templates, rendered and evaluated, keep runners out of everything
//! but staging; and every name the code relies on appears in the module.

use std::{collections::BTreeMap, fs, path::PathBuf};

use serde_json::Value;

fn terraform_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../terraform")
}

/// Renders `policies/{name}.json.tftpl` with `example-values.json`, by the
/// plain `${name}` substitution the module's `templatefile` amounts to.
fn policy(name: &str) -> Value {
    let dir = terraform_dir().join("policies");
    let values: BTreeMap<String, String> =
        serde_json::from_str(&fs::read_to_string(dir.join("example-values.json")).unwrap())
            .unwrap();
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

const BUCKET: &str = "arn:aws:s3:::self-runners-artifacts-dev";
const INDEX: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/self-runners-cache-index-dev";
const PROVENANCE: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/self-runners-artifact-provenance-dev";
const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:self-runners-cache-";

#[test]
fn runners_may_stage_and_read_but_never_write_the_cas_index_or_provenance() {
    let runner = policy("runner");
    let obj = |k: &str| format!("{BUCKET}/{k}");
    assert!(allows(&runner, "s3:PutObject", &obj("staging/0190-upload")));
    assert!(allows(&runner, "s3:GetObject", &obj("artifacts/abc")));
    assert!(allows(&runner, "dynamodb:Query", INDEX));
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
        "other/x",
        "staging",
    ] {
        assert!(
            !allows(&runner, "s3:PutObject", &obj(key)),
            "runner may put {key}"
        );
    }
    for action in [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:PutObjectAcl",
        "s3:PutBucketPolicy",
    ] {
        for key in ["staging/u1", "artifacts/abc", "metadata/abc.json"] {
            assert!(
                !allows(&runner, action, &obj(key)),
                "runner may {action} {key}"
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
                "runner may {action} on {table}"
            );
        }
    }
    assert!(
        !allows(
            &runner,
            "sqs:SendMessage",
            &format!("{QUEUE}invalidate-dev")
        ),
        "runner may invalidate"
    );
    for q in [
        "staged-dev",
        "accessed-dev",
        "invalidate-dev",
        "staged-dev-dlq",
    ] {
        for action in ["sqs:DeleteMessage", "sqs:ReceiveMessage", "sqs:PurgeQueue"] {
            assert!(
                !allows(&runner, action, &format!("{QUEUE}{q}")),
                "runner may {action} on {q}"
            );
        }
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
    ] {
        assert!(tf.contains(env), "terraform outputs lack {env}");
    }
}
