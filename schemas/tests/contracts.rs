//! The contracts: checked-in JSON Schemas match the types; decoding any bad
//! input is a typed error, never a panic.

use std::{fs, path::PathBuf};

use chrono::Utc;
use runcache_schemas::{
    decode, json_schema, ArtifactStaged, BuildProvenance, CacheInvalidate, ContentHash, Contract,
    Event, InvalidationSelector, SchemaError, Scope, TrustLevel,
};

#[test]
fn checked_in_json_schemas_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json");
    let generated = json_schema::all();
    for (name, text) in &generated {
        let on_disk = fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            &on_disk == text,
            "schemas/json/{name} is stale: run `cargo run -p runcache-schemas --bin runcache-schemagen` and commit"
        );
    }
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut names: Vec<String> = generated.into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(files, names, "schemas/json holds files no type generates");
}

fn staged() -> ArtifactStaged {
    ArtifactStaged {
        upload_id: "u1".into(),
        staging_key: "staging/u1".into(),
        claimed_hash: ContentHash::from_hex(&"ab".repeat(32)).unwrap(),
        size_bytes: 42,
        cache_key: "deps-1".into(),
        scope: Scope::new("o/r", "refs/heads/main"),
        cache_version: "v".into(),
        paths: vec!["node_modules".into()],
        compression: "zstd-without-long".into(),
        unpacked_bytes: Some(100),
        staged_at: Utc::now(),
        attributes: Default::default(),
        provenance: BuildProvenance {
            repository: "o/r".into(),
            trigger_event: "push".into(),
            trust: TrustLevel::Protected,
            ..Default::default()
        },
    }
}

#[test]
fn events_round_trip_through_their_envelope() {
    let e = staged();
    let json = e.encode();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["schema"], "artifact.staged");
    assert_eq!(v["version"], 1);
    assert_eq!(v["claimedHash"], format!("sha256:{}", "ab".repeat(32)));
    assert_eq!(decode::<ArtifactStaged>(&json).unwrap(), e);
    assert_eq!(Event::decode(&json).unwrap(), Event::Staged(Box::new(e)));
}

#[test]
fn malformed_json_is_a_typed_error() {
    for bad in [
        "",
        "{",
        "null",
        "[]",
        "42",
        "{\"version\":1}",
        "{\"schema\":\"x\"}",
    ] {
        assert!(
            matches!(Event::decode(bad), Err(SchemaError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn unknown_schema_is_named() {
    let err = Event::decode(r#"{"schema":"cache.exploded","version":1}"#).unwrap_err();
    match &err {
        SchemaError::UnknownSchema { found, .. } => assert_eq!(found, "cache.exploded"),
        other => panic!("expected UnknownSchema, got {other:?}"),
    }
    assert!(err.to_string().contains("artifact.staged"));
}

#[test]
fn unsupported_version_is_named() {
    let mut v: serde_json::Value = serde_json::from_str(&staged().encode()).unwrap();
    v["version"] = 2.into();
    let err = Event::decode(&v.to_string()).unwrap_err();
    assert!(matches!(
        err,
        SchemaError::UnsupportedVersion {
            found: 2,
            supported: 1,
            ..
        }
    ));
}

#[test]
fn a_wrong_or_missing_field_is_invalid_not_a_panic() {
    let mut v: serde_json::Value = serde_json::from_str(&staged().encode()).unwrap();
    v["claimedHash"] = "md5:abc".into();
    assert!(matches!(
        Event::decode(&v.to_string()),
        Err(SchemaError::Invalid {
            schema: "artifact.staged",
            ..
        })
    ));
    v.as_object_mut().unwrap().remove("claimedHash");
    assert!(matches!(
        Event::decode(&v.to_string()),
        Err(SchemaError::Invalid { .. })
    ));
}

#[test]
fn decode_refuses_another_schema() {
    let json = staged().encode();
    assert!(matches!(
        decode::<CacheInvalidate>(&json),
        Err(SchemaError::WrongSchema { .. })
    ));
}

#[test]
fn an_empty_invalidation_selector_is_refused() {
    assert!(InvalidationSelector::default().validate().is_err());
    let only_ref = InvalidationSelector {
        git_ref: Some("refs/heads/main".into()),
        ..Default::default()
    };
    assert!(only_ref.validate().is_err());
    let by_repo = InvalidationSelector {
        repository: Some("o/r".into()),
        ..Default::default()
    };
    assert!(by_repo.validate().is_ok());
}

#[test]
fn trust_levels_follow_the_trigger_and_ref() {
    use TrustLevel::*;
    assert_eq!(
        TrustLevel::classify("push", "refs/heads/main", "main"),
        Protected
    );
    assert_eq!(
        TrustLevel::classify("push", "refs/heads/feature", "main"),
        Branch
    );
    assert_eq!(
        TrustLevel::classify("pull_request", "refs/pull/1/merge", "main"),
        PullRequest
    );
    assert_eq!(
        TrustLevel::classify("pull_request_target", "refs/heads/main", "main"),
        Untrusted
    );
    assert_eq!(
        TrustLevel::classify("issue_comment", "refs/heads/main", "main"),
        Untrusted
    );
    assert!(Untrusted < PullRequest && PullRequest < Branch && Branch < Protected);
}

#[test]
fn a_tier_writes_only_the_scopes_it_may() {
    use TrustLevel::*;
    let main = "refs/heads/main";
    assert!(Protected.may_write_ref(main, "main"));
    assert!(Protected.may_write_ref("refs/pull/7/merge", "main"));
    assert!(Branch.may_write_ref("refs/heads/feature", "main"));
    assert!(!Branch.may_write_ref(main, "main"));
    assert!(!Branch.may_write_ref("refs/heads/trunk", "refs/heads/trunk"));
    for low in [PullRequest, Untrusted] {
        assert!(low.may_write_ref("refs/pull/7/merge", "main"));
        assert!(!low.may_write_ref(main, "main"), "{low:?} may write main");
        assert!(!low.may_write_ref("refs/heads/feature", "main"));
        assert!(!low.may_write_ref("refs/tags/v1", "main"));
    }
    assert_eq!(TrustLevel::ALL.iter().max(), Some(&Protected));
}

#[test]
fn content_hashes_are_validated() {
    assert!("sha256:xyz".parse::<ContentHash>().is_err());
    let h: ContentHash = "AB".repeat(32).parse().unwrap();
    assert_eq!(h.hex(), "ab".repeat(32));
    assert!(serde_json::from_str::<ContentHash>("\"abc\"").is_err());
}
