//! The look-around: after the search, what lies near the primary key
//! (other versions and scopes, invalidations and evictions, staged,
//! dead-lettered and quarantined saves, the closest keys), each look
//! turned into findings or a "not checked" line.

use super::*;

/// How many audit records (newest first) are searched for the key.
const AUDIT_RECORDS_SEARCHED: usize = 1000;
/// How many `staging/` keys are listed, and how many of the newest are
/// looked at for their labels.
const STAGING_LISTED: usize = 10_000;
const STAGING_INSPECTED: usize = 500;
/// Dead-lettered staged messages looked at.
const DEAD_LETTERS_INSPECTED: usize = 100;
/// Keys shown per scope as the closest ones.
const CLOSEST_SHOWN: usize = 5;
/// Entries of one kind reported before the rest are only counted.
const FINDINGS_PER_KIND: usize = 10;

/// The other compression methods actions/toolkit writes into versions.
const OTHER_COMPRESSIONS: [&str; 3] = ["zstd", "gzip", ""];

pub(super) fn not_checked(check: &str, error: &StoreError) -> NotChecked {
    let reason = match error {
        StoreError::AccessDenied { action, resource } => format!(
            "not readable with these credentials ({action} on {resource} is denied); \
             run explain with a role that may read it to see this part"
        ),
        other => format!("could not check: {}", describe(other)),
    };
    NotChecked {
        check: check.to_string(),
        reason,
    }
}

/// The looks around the primary key, collecting findings.
pub(super) struct Look<'a> {
    pub(super) backend: &'a Backend,
    pub(super) ctx: &'a RunContext,
    pub(super) req: &'a ExplainRequest,
    pub(super) scopes: &'a [Scope],
    pub(super) version: &'a str,
    pub(super) now: DateTime<Utc>,
    pub(super) findings: Vec<Finding>,
    pub(super) not_checked: Vec<NotChecked>,
}

impl Look<'_> {
    pub(super) fn readable(&self, git_ref: &str) -> bool {
        self.scopes.iter().any(|s| s.git_ref == git_ref)
    }

    pub(super) fn age(&self, at: DateTime<Utc>) -> i64 {
        (self.now - at).num_seconds().max(0)
    }

    /// The exact key, soft-deleted, where restore looked.
    pub(super) fn not_live(&mut self, entries: &[IndexEntry]) {
        for e in entries {
            self.findings.push(soft_deleted(e, None, false));
        }
    }

    pub(super) fn below_trust(&mut self, entries: &[IndexEntry]) {
        for e in entries.iter().take(FINDINGS_PER_KIND) {
            self.findings.push(Finding::BelowTrust {
                git_ref: e.git_ref.clone(),
                key: e.cache_key.clone(),
                trust: e.trust,
                trigger_event: e.trigger_event.clone(),
                required: self.req.min_trust,
            });
        }
    }

    /// The key under other versions, and in scopes this run cannot read.
    pub(super) async fn elsewhere(&mut self) {
        let repository = &self.ctx.scope.repository;
        let entries = match self.backend.index.by_key(repository, &self.req.key).await {
            Ok(entries) => entries,
            Err(e) => {
                self.not_checked
                    .push(not_checked("other-versions-and-scopes", &e));
                self.other_compressions().await;
                return;
            }
        };
        let mut mismatches = 0;
        let mut others = 0;
        for e in entries {
            if self.readable(&e.git_ref) {
                if e.cache_version == self.version || mismatches >= FINDINGS_PER_KIND {
                    continue;
                }
                mismatches += 1;
                let finding = self.version_mismatch(&e).await;
                self.findings.push(finding);
            } else if others < FINDINGS_PER_KIND {
                others += 1;
                self.findings.push(Finding::OtherScope {
                    why: why_invisible(&e.git_ref, self.ctx),
                    git_ref: e.git_ref.clone(),
                    key: e.cache_key.clone(),
                    state: e.state,
                    created_at: e.created_at,
                    same_version: e.cache_version == self.version,
                });
            }
        }
    }

    /// Without `by_key`: the key in the readable scopes under the versions
    /// the same paths give with another compression or on Windows.
    pub(super) async fn other_compressions(&mut self) {
        for scope in self.scopes {
            for (compression, windows_only) in alternative_inputs() {
                let version = cache_version_with(&self.req.paths, compression, windows_only);
                if let Ok(Some(e)) = self.backend.index.get(scope, &version, &self.req.key).await {
                    let finding = self.version_mismatch(&e).await;
                    self.findings.push(finding);
                }
            }
        }
    }

    /// Names the input that differs: from the entry's provenance record
    /// when there is one, else by recomputing the version.
    pub(super) async fn version_mismatch(&mut self, e: &IndexEntry) -> Finding {
        let record = match self.backend.provenance.get(&e.content_hash).await {
            Ok(records) => records
                .into_iter()
                .filter(|r| r.cache_version == e.cache_version)
                .max_by_key(|r| (r.upload_id == e.upload_id, r.promoted_at)),
            Err(err) => {
                if !self.not_checked.iter().any(|n| n.check == "provenance") {
                    self.not_checked.push(not_checked("provenance", &err));
                }
                None
            }
        };
        let mut differing = Vec::new();
        let (mut their_paths, mut their_compression) = match record {
            Some(r) => {
                if r.paths != self.req.paths {
                    let (mut a, mut b) = (r.paths.clone(), self.req.paths.clone());
                    a.sort();
                    b.sort();
                    differing.push(if a == b {
                        VersionInput::PathOrder
                    } else {
                        VersionInput::Paths
                    });
                }
                if r.compression != runcache_archive::COMPRESSION {
                    differing.push(VersionInput::Compression);
                }
                (Some(r.paths), Some(r.compression))
            }
            None => (None, None),
        };
        if differing.is_empty() {
            // Same recorded inputs (another producer's version rules), or
            // nothing recorded: try the inputs actions/toolkit varies.
            let found = alternative_inputs()
                .into_iter()
                .find(|(c, w)| cache_version_with(&self.req.paths, c, *w) == e.cache_version);
            match found {
                Some((compression, windows_only)) => {
                    if compression != runcache_archive::COMPRESSION {
                        differing.push(VersionInput::Compression);
                    }
                    if windows_only {
                        differing.push(VersionInput::WindowsOnly);
                    }
                    their_paths = their_paths.or_else(|| Some(self.req.paths.clone()));
                    their_compression = their_compression.or(Some(compression.to_string()));
                }
                None => differing.push(VersionInput::Unknown),
            }
        }
        Finding::VersionMismatch {
            git_ref: e.git_ref.clone(),
            key: e.cache_key.clone(),
            state: e.state,
            created_at: e.created_at,
            their_version: e.cache_version.clone(),
            differing_inputs: differing,
            their_paths,
            their_compression,
        }
    }

    /// Invalidations, evictions and rejections of the key in the readable
    /// scopes, from the audit log: the rule of an eviction, and what
    /// happened to entries whose records have since expired.
    pub(super) async fn audit_log(&mut self) {
        let records = match self
            .backend
            .index
            .audit_log(&self.ctx.scope.repository, AUDIT_RECORDS_SEARCHED)
            .await
        {
            Ok(records) => records,
            Err(e) => {
                self.not_checked.push(not_checked("audit-log", &e));
                return;
            }
        };
        let mine: Vec<&AuditRecord> = records
            .iter()
            .filter(|r| r.cache_key.as_deref() == Some(self.req.key.as_str()))
            .filter(|r| r.git_ref.as_deref().is_some_and(|g| self.readable(g)))
            .collect();
        let mut quarantined = 0;
        for r in mine {
            let git_ref = r.git_ref.clone().unwrap_or_default();
            match r.action {
                AuditAction::Rejected if quarantined < FINDINGS_PER_KIND => {
                    quarantined += 1;
                    let finding = self.quarantined(r, git_ref).await;
                    self.findings.push(finding);
                }
                AuditAction::Invalidated | AuditAction::Evicted
                    if r.cache_version.as_deref() == Some(self.version) =>
                {
                    self.merge_audit(r, git_ref);
                }
                _ => {}
            }
        }
    }

    /// Adds an audit record's rule to the finding about its entry, or a
    /// finding of its own when the entry's record is gone.
    pub(super) fn merge_audit(&mut self, r: &AuditRecord, git_ref: String) {
        let evicted = r.action == AuditAction::Evicted;
        for f in &mut self.findings {
            let same = match f {
                Finding::Evicted(d) if evicted => Some(d),
                Finding::Invalidated(d) if !evicted => Some(d),
                _ => None,
            };
            if let Some(d) = same.filter(|d| d.git_ref == git_ref) {
                d.rule.get_or_insert_with(|| r.rule.clone());
                return;
            }
        }
        // Only the newest record of an entry that no longer has one
        // (records are newest first, so an older one finds this finding).
        let deletion = SoftDeletion {
            git_ref,
            key: self.req.key.clone(),
            at: Some(r.at),
            by: Some(r.actor.clone()),
            reason: Some(r.reason.clone()),
            rule: Some(r.rule.clone()),
            record_removed: true,
        };
        self.findings.push(if evicted {
            Finding::Evicted(deletion)
        } else {
            Finding::Invalidated(deletion)
        });
    }

    pub(super) async fn quarantined(&mut self, r: &AuditRecord, git_ref: String) -> Finding {
        // promote names its rejection records `rejected-{upload id}`.
        let upload_id = r.audit_id.strip_prefix("rejected-").map(str::to_string);
        let object_key = upload_id.as_deref().map(names::quarantine_key);
        let object = match &object_key {
            Some(key) => Some(match self.backend.blobs.head(key).await {
                Ok(Some(_)) => ObjectPresence::Present,
                Ok(None) => ObjectPresence::Gone,
                Err(e) => {
                    if !self.not_checked.iter().any(|n| n.check == "quarantine") {
                        self.not_checked.push(not_checked("quarantine", &e));
                    }
                    ObjectPresence::Unreadable
                }
            }),
            None => None,
        };
        Finding::Quarantined {
            git_ref,
            upload_id,
            at: r.at,
            reason: r.reason.clone(),
            object_key,
            object,
        }
    }

    /// Saves of the key still under `staging/` (labelled by `save`).
    pub(super) async fn staging(&mut self) {
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = match self
                .backend
                .blobs
                .list(names::STAGING_PREFIX, after.as_deref(), 1000)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    self.not_checked.push(not_checked("staging", &e));
                    return;
                }
            };
            keys.extend(page.objects.into_iter().map(|o| o.key));
            match page.next {
                Some(next) if keys.len() < STAGING_LISTED => after = Some(next),
                _ => break,
            }
        }
        // Upload ids are UUIDv7: their order is upload order; newest last.
        keys.sort_by(|a, b| staging::upload_id_of(a).cmp(staging::upload_id_of(b)));
        let newest = keys.len().saturating_sub(STAGING_INSPECTED);
        let mut unlabelled = 0;
        for key in &keys[newest..] {
            let meta = match self.backend.blobs.head(key).await {
                Ok(Some(meta)) => meta,
                Ok(None) => continue, // promoted meanwhile
                Err(e) => {
                    self.not_checked.push(not_checked("staging", &e));
                    return;
                }
            };
            let Some(labels) = staging::Labels::read(&meta.metadata) else {
                unlabelled += 1;
                continue;
            };
            if !labels.is_for_key(&self.req.key)
                || labels.repository.as_deref() != Some(self.ctx.scope.repository.as_str())
                || !self.readable(&labels.git_ref)
            {
                continue;
            }
            self.findings.push(Finding::Staged {
                upload_id: staging::upload_id_of(key).to_string(),
                staged_at: meta.last_modified,
                age_seconds: self.age(meta.last_modified),
                same_version: labels.cache_version.as_deref() == Some(self.version),
                git_ref: labels.git_ref,
            });
        }
        if unlabelled > 0 {
            self.not_checked.push(NotChecked {
                check: "staging".into(),
                reason: format!(
                    "{unlabelled} staged upload(s) carry no key label (an older runcache saved \
                     them), so whether one is for this key is unknown"
                ),
            });
        }
    }

    /// Saves of the key whose staged message went to the dead-letter queue.
    pub(super) async fn dead_letters(&mut self) {
        let messages = match self
            .backend
            .staged
            .dead_letters(DEAD_LETTERS_INSPECTED)
            .await
        {
            Ok(messages) => messages,
            Err(e) => {
                self.not_checked.push(not_checked("dead-letters", &e));
                return;
            }
        };
        for m in messages {
            let Ok(Event::Staged(ev)) = Event::decode(&m.body) else {
                continue;
            };
            if ev.cache_key != self.req.key
                || ev.scope.repository != self.ctx.scope.repository
                || !self.readable(&ev.scope.git_ref)
            {
                continue;
            }
            self.findings.push(Finding::DeadLettered {
                git_ref: ev.scope.git_ref.clone(),
                upload_id: ev.upload_id.clone(),
                sent_at: m.sent_at,
                reason: m.attributes.get(ATTR_DEAD_LETTER_REASON).cloned(),
            });
        }
    }

    /// Per readable scope, the keys (any state) sharing the longest prefix
    /// with the primary key, newest first.
    pub(super) async fn closest_keys(&mut self) {
        for scope in self.scopes {
            match closest_in(self.backend, scope, self.version, &self.req.key).await {
                Ok((common_prefix, mut entries)) => {
                    entries.sort_by_key(|e| std::cmp::Reverse(e.created_at));
                    let keys = entries
                        .into_iter()
                        .take(CLOSEST_SHOWN)
                        .map(|e| NearbyKey {
                            age_seconds: self.age(e.created_at),
                            key: e.cache_key,
                            state: e.state,
                            created_at: e.created_at,
                        })
                        .collect();
                    self.findings.push(Finding::ClosestKeys {
                        git_ref: scope.git_ref.clone(),
                        common_prefix,
                        keys,
                    });
                }
                Err(e) => {
                    self.not_checked.push(not_checked("closest-keys", &e));
                    return;
                }
            }
        }
    }
}

/// The other (compression, windows-only) inputs of a version.
pub(super) fn alternative_inputs() -> Vec<(&'static str, bool)> {
    let mut inputs: Vec<(&str, bool)> = OTHER_COMPRESSIONS.iter().map(|c| (*c, false)).collect();
    inputs.extend(
        std::iter::once(runcache_archive::COMPRESSION)
            .chain(OTHER_COMPRESSIONS)
            .map(|c| (c, true)),
    );
    inputs
}

pub(super) fn soft_deleted(e: &IndexEntry, rule: Option<String>, record_removed: bool) -> Finding {
    let evicted = e.state == EntryState::Evicted;
    let deletion = SoftDeletion {
        git_ref: e.git_ref.clone(),
        key: e.cache_key.clone(),
        at: e.invalidated_at,
        by: e.invalidated_by.clone(),
        reason: e.reason.clone(),
        rule: match rule {
            None if evicted => eviction_rule(e.reason.as_deref()),
            rule => rule,
        },
        record_removed,
    };
    if evicted {
        Finding::Evicted(deletion)
    } else {
        Finding::Invalidated(deletion)
    }
}

/// The sweep's rule from its reason text, when no audit record says it.
pub(super) fn eviction_rule(reason: Option<&str>) -> Option<String> {
    let reason = reason?;
    if reason.starts_with("not accessed for") {
        Some("ttl".into())
    } else if reason.contains("over its quota") {
        Some("quota".into())
    } else {
        None
    }
}

/// The longest prefix of `key` that some other key of the scope shares, by
/// binary search over its length (a prefix shared by some key has every
/// shorter prefix shared too), and the entries sharing it.
pub(super) async fn closest_in(
    backend: &Backend,
    scope: &Scope,
    version: &str,
    key: &str,
) -> Result<(String, Vec<IndexEntry>), StoreError> {
    let boundaries: Vec<usize> = key
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(key.len()))
        .collect();
    let others = |entries: Vec<IndexEntry>| -> Vec<IndexEntry> {
        entries.into_iter().filter(|e| e.cache_key != key).collect()
    };
    let shared = |prefix: &str| {
        let prefix = prefix.to_string();
        async move {
            backend
                .index
                .list_prefix(scope, version, &prefix, 2)
                .await
                .map(|found| found.iter().any(|e| e.cache_key != key))
        }
    };
    if !shared("").await? {
        return Ok((String::new(), Vec::new()));
    }
    // boundaries[lo] is shared; find the largest shared index.
    let (mut lo, mut hi) = (0, boundaries.len() - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if shared(&key[..boundaries[mid]]).await? {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let prefix = &key[..boundaries[lo]];
    let found = backend
        .index
        .list_prefix(scope, version, prefix, 100)
        .await?;
    Ok((prefix.to_string(), others(found)))
}

/// Why a run cannot read `git_ref` (DESIGN.md "Scope isolation").
pub(super) fn why_invisible(git_ref: &str, ctx: &RunContext) -> String {
    let default = &ctx.default_branch;
    if let Some(pr) = git_ref.strip_prefix("refs/pull/") {
        let number = pr.split('/').next().unwrap_or(pr);
        return format!(
            "it belongs to pull request #{number}; a pull request's entries are visible only to \
             that pull request"
        );
    }
    if ctx.scope.is_pull_request() {
        let base = ctx
            .base_ref
            .as_deref()
            .map(|b| format!("its base branch `{b}`, "))
            .unwrap_or_default();
        return format!(
            "this pull request reads only its own entries, {base}and the default branch \
             `{default}`'s"
        );
    }
    match git_ref.strip_prefix("refs/heads/") {
        Some(branch) => format!(
            "`{branch}` is a sibling branch; a branch reads only its own entries and the default \
             branch `{default}`'s"
        ),
        None => format!(
            "a run reads only its own ref's entries, its pull request's base branch's and the \
             default branch `{default}`'s"
        ),
    }
}
