//! The report as text: the one-line summary, each finding described, the
//! short form printed after a missed restore and the long form of
//! `runcache explain`.

use super::*;

pub(super) fn summary(x: &Explanation) -> String {
    let key = &x.primary_key;
    if let Some(Finding::Unrestorable {
        key: found, reason, ..
    }) = x
        .findings
        .iter()
        .find(|f| matches!(f, Finding::Unrestorable { .. }))
    {
        return format!(
            "Restore finds `{found}` in {} but cannot restore it: {reason}. Every restore \
             of it will fail (as a miss): remove it with `runcache admin delete {found} \
             --ref {} --reason …` and save again.",
            x.result.matched_ref.as_deref().unwrap_or("?"),
            x.result.matched_ref.as_deref().unwrap_or("?"),
        );
    }
    match x.result.hit_kind {
        HitKind::Exact => format!(
            "`{key}` matches exactly in {}: restore restores it (cache-hit=true).",
            x.result.matched_ref.as_deref().unwrap_or("?")
        ),
        HitKind::Prefix => format!(
            "No exact match for `{key}`; restore uses `{}` from {} (a prefix match, \
             cache-hit=false).",
            x.result.matched_key.as_deref().unwrap_or("?"),
            x.result.matched_ref.as_deref().unwrap_or("?")
        ),
        HitKind::Miss => {
            let traces = x
                .findings
                .iter()
                .filter(|f| !matches!(f, Finding::ClosestKeys { .. }))
                .count();
            let scopes = x.readable_refs.len();
            if traces == 0 {
                format!(
                    "Nothing matched `{key}` or its restore keys in the {scopes} scope(s) this \
                     run reads, and there is no trace of `{key}` anywhere it may look: it was \
                     never saved with these paths where this run can see it, or its records \
                     have expired."
                )
            } else {
                format!(
                    "Nothing matched `{key}` or its restore keys in the {scopes} scope(s) this \
                     run reads; see why below."
                )
            }
        }
    }
}

pub(super) fn age_text(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

pub(super) fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or("at an unknown time".into(), |t| {
        t.format("on %Y-%m-%d at %H:%M:%S UTC").to_string()
    })
}

pub(super) fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

pub(super) fn path_list(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| format!("--path {p}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Finding {
    /// One line for people.
    pub fn describe(&self, x: &Explanation) -> String {
        match self {
            Finding::Unrestorable {
                git_ref,
                key,
                content_hash,
                reason,
            } => format!("`{key}` in {git_ref} ({content_hash}) cannot be restored: {reason}"),
            Finding::VersionMismatch {
                git_ref,
                key,
                state,
                their_version,
                differing_inputs,
                their_paths,
                their_compression,
                ..
            } => {
                let why: Vec<String> = differing_inputs
                    .iter()
                    .map(|input| match input {
                        VersionInput::Paths => format!(
                            "the path list differs: it was saved with `{}`, you gave `{}`",
                            path_list(their_paths.as_deref().unwrap_or_default()),
                            path_list(&x.paths)
                        ),
                        VersionInput::PathOrder => format!(
                            "the same paths in another order: it was saved with `{}`, you gave \
                             `{}` (the order is part of the version)",
                            path_list(their_paths.as_deref().unwrap_or_default()),
                            path_list(&x.paths)
                        ),
                        VersionInput::Compression => format!(
                            "the compression differs: it was saved with `{}`, runcache uses `{}`",
                            their_compression
                                .as_deref()
                                .filter(|c| !c.is_empty())
                                .unwrap_or("none"),
                            x.compression
                        ),
                        VersionInput::WindowsOnly => "it was saved on Windows without \
                             enableCrossOsArchive (its version is marked windows-only)"
                            .to_string(),
                        VersionInput::Unknown => "its paths are not recorded, and no other \
                             compression explains it: most likely the path list differs"
                            .to_string(),
                    })
                    .collect();
                format!(
                    "`{key}` exists in {git_ref} ({}) under another version ({}… vs your {}…): {}",
                    state.as_str(),
                    short(their_version),
                    short(&x.cache_version),
                    why.join("; ")
                )
            }
            Finding::OtherScope {
                git_ref,
                key,
                state,
                created_at,
                same_version,
                why,
            } => format!(
                "`{key}` exists in {git_ref} ({}, {} old{}), which this run cannot read: {why}",
                state.as_str(),
                age_text((Utc::now() - *created_at).num_seconds().max(0)),
                if *same_version {
                    ""
                } else {
                    ", another version"
                }
            ),
            Finding::Invalidated(d) => format!(
                "`{}` in {} was invalidated {} by {}{}: {}{}",
                d.key,
                d.git_ref,
                when(d.at),
                d.by.as_deref().unwrap_or("someone unknown"),
                match d.rule.as_deref() {
                    Some("verification") => " (promote could not keep its blob)",
                    _ => "",
                },
                d.reason.as_deref().unwrap_or("no reason recorded"),
                expired_note(d.record_removed)
            ),
            Finding::Evicted(d) => format!(
                "`{}` in {} was evicted {} by the {} rule: {}{}",
                d.key,
                d.git_ref,
                when(d.at),
                d.rule.as_deref().unwrap_or("sweep's"),
                d.reason.as_deref().unwrap_or("no reason recorded"),
                expired_note(d.record_removed)
            ),
            Finding::BelowTrust {
                git_ref,
                key,
                trust,
                trigger_event,
                required,
            } => format!(
                "`{key}` in {git_ref} was passed over: built by a `{trigger_event}` run \
                 ({trust} trust), below --trust {required}"
            ),
            Finding::Staged {
                git_ref,
                upload_id,
                age_seconds,
                same_version,
                ..
            } => format!(
                "a save of `{}` to {git_ref} is still staged, not promoted (upload {upload_id}, {} \
                 old{}): promotion has not run or is failing; on AWS check the promote worker \
                 and the staged queue's DLQ, on the local backend run `runcache-worker promote \
                 --once`",
                x.primary_key,
                age_text(*age_seconds),
                if *same_version {
                    ""
                } else {
                    ", another version"
                }
            ),
            Finding::DeadLettered {
                git_ref,
                upload_id,
                sent_at,
                reason,
            } => format!(
                "a save of `{}` to {git_ref} (upload {upload_id}, sent {}) was dead-lettered \
                 and never promoted: {}",
                x.primary_key,
                sent_at.format("%Y-%m-%d %H:%M:%S UTC"),
                reason.as_deref().unwrap_or("no reason recorded")
            ),
            Finding::Quarantined {
                git_ref,
                at,
                reason,
                object_key,
                object,
                ..
            } => format!(
                "a save of `{}` to {git_ref} was rejected {} (its bytes did not match their \
                 claimed hash): {reason}{}",
                x.primary_key,
                when(Some(*at)),
                match (object_key, object) {
                    (Some(k), Some(ObjectPresence::Present)) => format!("; kept as {k}"),
                    (Some(k), Some(ObjectPresence::Gone)) => format!("; {k} has since expired"),
                    (Some(k), _) => format!("; kept as {k} (not readable with these credentials)"),
                    (None, _) => String::new(),
                }
            ),
            Finding::ClosestKeys {
                git_ref,
                common_prefix,
                keys,
            } => {
                if keys.is_empty() {
                    return format!("{git_ref} holds no other key with these paths");
                }
                let list: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        format!(
                            "`{}` ({}, {} old)",
                            k.key,
                            k.state.as_str(),
                            age_text(k.age_seconds)
                        )
                    })
                    .collect();
                if common_prefix.is_empty() {
                    format!(
                        "no key in {git_ref} shares a prefix with `{}`; its newest: {}",
                        x.primary_key,
                        list.join(", ")
                    )
                } else {
                    format!(
                        "closest keys in {git_ref} (sharing `{common_prefix}`): {}",
                        list.join(", ")
                    )
                }
            }
        }
    }
}

/// Quotes a value for a shell command line when it needs it.
/// Said of a finding read from the audit log after its entry expired.
fn expired_note(record_removed: bool) -> &'static str {
    if record_removed {
        " (from the audit log; the entry has since expired)"
    } else {
        ""
    }
}

pub(super) fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

impl Explanation {
    /// The `runcache explain` command line for the same restore, with its
    /// scope spelled out so that it runs the same anywhere (a laptop with
    /// read access, outside the job).
    pub fn command(&self) -> String {
        let mut cmd = format!("runcache explain --key {}", shell_word(&self.primary_key));
        for k in &self.restore_keys {
            cmd.push_str(&format!(" --restore-key {}", shell_word(k)));
        }
        for p in &self.paths {
            cmd.push_str(&format!(" --path {}", shell_word(p)));
        }
        if self.min_trust != TrustLevel::Untrusted {
            cmd.push_str(&format!(" --trust {}", self.min_trust));
        }
        cmd.push_str(&format!(
            " --repository {} --ref {}",
            shell_word(&self.repository),
            shell_word(&self.git_ref)
        ));
        // The base branch is the second scope a pull request reads.
        if self.git_ref.starts_with("refs/pull/") {
            if let Some(base) = self
                .readable_refs
                .get(1)
                .filter(|_| self.readable_refs.len() > 2)
            {
                let base = base.strip_prefix("refs/heads/").unwrap_or(base);
                cmd.push_str(&format!(" --base-ref {}", shell_word(base)));
            }
        }
        // The default branch is always the last scope read.
        if let Some(default) = self.readable_refs.last() {
            let default = default.strip_prefix("refs/heads/").unwrap_or(default);
            if default != "main" {
                cmd.push_str(&format!(" --default-branch {}", shell_word(default)));
            }
        }
        cmd
    }

    /// The short form printed after a miss (`restore --explain`).
    pub fn render_short(&self) -> String {
        let mut out = format!("runcache: why: {}\n", self.summary);
        for f in self
            .findings
            .iter()
            .filter(|f| !matches!(f, Finding::ClosestKeys { keys, .. } if keys.is_empty()))
        {
            out.push_str(&format!("  - {}\n", f.describe(self)));
        }
        for n in &self.not_checked {
            out.push_str(&format!("  - not checked ({}): {}\n", n.check, n.reason));
        }
        out.push_str(&format!(
            "  the whole search, step by step: {}\n",
            self.command()
        ));
        out
    }

    /// The full report of `runcache explain`.
    pub fn render_long(&self) -> String {
        let mut out = format!(
            "Restore of `{}` in {}@{}\n  paths {} (compression {}), version {}\n  reads, in order: {}\n",
            self.primary_key,
            self.repository,
            self.git_ref,
            path_list(&self.paths),
            self.compression,
            self.cache_version,
            self.readable_refs.join(", ")
        );
        if self.min_trust != TrustLevel::Untrusted {
            out.push_str(&format!(
                "  only entries of trust {} or more\n",
                self.min_trust
            ));
        }
        out.push_str("\nSearch, as restore runs it:\n");
        for (i, s) in self.steps.iter().enumerate() {
            let what = match (s.lookup, s.role) {
                (Lookup::Exact, _) => format!("exact key `{}`", s.looked_for),
                (Lookup::Prefix, KeyRole::PrimaryKey) => {
                    format!("primary key as prefix `{}`", s.looked_for)
                }
                (Lookup::Prefix, KeyRole::RestoreKey) => {
                    format!("restore key `{}`", s.looked_for)
                }
            };
            let result = match s.outcome {
                StepOutcome::Matched => format!("matched `{}`", s.key.as_deref().unwrap_or("?")),
                StepOutcome::NotFound => "nothing".to_string(),
                StepOutcome::NotLive => format!(
                    "found, but {}",
                    s.state.map_or("not live", EntryState::as_str)
                ),
                StepOutcome::BelowTrust => format!(
                    "only entries below --trust {} (newest `{}`)",
                    self.min_trust,
                    s.key.as_deref().unwrap_or("?")
                ),
            };
            out.push_str(&format!(
                "  {:>2}. {:<24} {what}: {result}\n",
                i + 1,
                s.git_ref
            ));
        }
        out.push_str(&format!("\n{}\n", self.summary));
        if !self.findings.is_empty() {
            out.push_str("\nFound around it:\n");
            for f in &self.findings {
                out.push_str(&format!("  - [{}] {}\n", f.kind(), f.describe(self)));
            }
        }
        if !self.not_checked.is_empty() {
            out.push_str("\nNot checked:\n");
            for n in &self.not_checked {
                out.push_str(&format!("  - {}: {}\n", n.check, n.reason));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("deps-linux:abc"), "deps-linux:abc");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("~/.npm"), "'~/.npm'");
    }
}
