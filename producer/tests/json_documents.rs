//! Every `--json` document in one style (#22 item 11): an object that
//! begins with `schema` (`runcache.<command>`) and `version`, field names
//! in lowerCamelCase at every depth, through the binary.

use std::fs;

mod common;

use common::{ok, Sandbox, MAIN};
use serde_json::Value;

/// Fields whose keys are data (toolchain names), not field names.
const DATA_MAPS: &[&str] = &["toolchains"];

fn camel_case(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

/// Every field name in `value` that is not lowerCamelCase, with its path.
fn offending_names(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (name, inner) in map {
                if !camel_case(name) {
                    out.push(format!("{path}.{name}"));
                }
                if !DATA_MAPS.contains(&name.as_str()) {
                    offending_names(inner, &format!("{path}.{name}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                offending_names(inner, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Parses stdout as one document and checks its envelope and names.
fn document(stdout: &str, schema: &str) -> Value {
    let doc: Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("{schema}: stdout is not one JSON document ({e}): {stdout}"));
    assert_eq!(doc["schema"], schema, "{doc}");
    assert_eq!(doc["version"], 1, "{doc}");
    let lines: Vec<&str> = stdout.lines().map(str::trim_start).collect();
    assert!(
        lines[1].starts_with("\"schema\"") && lines[2].starts_with("\"version\""),
        "the envelope comes first: {stdout}"
    );
    let mut bad = Vec::new();
    offending_names(&doc, "", &mut bad);
    assert!(bad.is_empty(), "{schema}: not lowerCamelCase: {bad:?}");
    doc
}

#[test]
fn every_json_document_is_versioned_and_in_one_style() {
    let s = Sandbox::new();
    fs::create_dir_all(s.ws().join("dist")).unwrap();
    fs::write(s.ws().join("dist/a"), b"a").unwrap();
    fs::write(s.ws().join("package-lock.json"), b"{\"lockfileVersion\":3}").unwrap();

    let key = document(
        &ok(&s.run(
            &["key", "deps", "--toolchain", "node=20.11.0", "--json"],
            MAIN,
        )),
        "runcache.key",
    );
    assert!(key["lockfiles"][0]["sizeBytes"].is_u64(), "{key}");

    let saved = document(
        &ok(&s.run(&["save", "--key", "k", "--path", "dist", "--json"], MAIN)),
        "runcache.save",
    );
    assert_eq!(saved["status"], "saved", "enum values stay kebab-case");
    assert!(saved["contentHash"].is_string() && saved["durationMs"].is_u64());
    let again = document(
        &ok(&s.run(&["save", "--key", "k", "--path", "dist", "--json"], MAIN)),
        "runcache.save",
    );
    assert_eq!(again["status"], "already-cached");

    let hit = document(
        &ok(&s.run(&["restore", "--key", "k", "--path", "dist", "--json"], MAIN)),
        "runcache.restore",
    );
    assert_eq!(
        (&hit["cacheHit"], &hit["hitKind"]),
        (&"true".into(), &"exact".into())
    );
    let miss = document(
        &ok(&s.run(
            &["restore", "--key", "nope", "--path", "dist", "--json"],
            MAIN,
        )),
        "runcache.restore",
    );
    assert_eq!(miss["cacheHit"], "");
    assert!(
        miss.get("error").is_none(),
        "a plain miss has no error: {miss}"
    );
    // A restore that cannot run reports the same document, with the reason.
    let failed = document(
        &ok(&s.run_env(
            &["restore", "--key", "k", "--path", "dist", "--json"],
            MAIN,
            &[("RUNCACHE_BACKEND", "s3")],
        )),
        "runcache.restore",
    );
    assert_eq!(
        (&failed["cacheHit"], &failed["cachePrimaryKey"]),
        (&"".into(), &"k".into())
    );
    assert!(failed["error"].as_str().unwrap().contains("s3"), "{failed}");

    let out = s.root().join("got");
    document(
        &ok(&s.run(
            &[
                "get",
                "--key",
                "k",
                "--out",
                out.to_str().unwrap(),
                "--json",
            ],
            MAIN,
        )),
        "runcache.get",
    );
    document(
        &ok(&s.run(
            &["explain", "--key", "nope", "--path", "dist", "--json"],
            MAIN,
        )),
        "runcache.explain",
    );
    let config = document(&ok(&s.run(&["config", "--json"], MAIN)), "runcache.config");
    assert!(config["settings"].as_array().is_some_and(|s| !s.is_empty()));

    let admin: &[(&[&str], &str)] = &[
        (&["admin", "stats", "--json"], "runcache.admin.stats"),
        (&["admin", "ls", "--json"], "runcache.admin.ls"),
        (
            &["admin", "provenance", "k", "--json"],
            "runcache.admin.provenance",
        ),
        (&["admin", "verify", "--json"], "runcache.admin.verify"),
        (
            &[
                "admin",
                "invalidate",
                "--key-prefix",
                "zzz",
                "--reason",
                "t",
                "--json",
            ],
            "runcache.admin.invalidate",
        ),
        (
            &["admin", "delete", "k", "--reason", "t", "--json"],
            "runcache.admin.delete",
        ),
    ];
    for (args, schema) in admin {
        let doc = document(&ok(&s.run(args, MAIN)), schema);
        if *schema == "runcache.admin.ls" {
            assert_eq!(doc["entries"][0]["cacheKey"], "k", "{doc}");
        }
    }
}
