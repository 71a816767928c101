//! `FsBlobStore`: the bucket as a directory tree. `root/{key}` holds the
//! object, `root/.meta/{key}.json` its user metadata, `root/.tmp/` uploads in
//! progress. A put streams into `.tmp/`, fsyncs, then renames into place, so
//! a reader never sees a partial object and a crash leaves only a temp file
//! (removed by `abort_stale_uploads`: at once after a minute when no live
//! upload holds its lock, which a killed writer no longer does).

use std::{
    collections::BTreeMap,
    io::SeekFrom,
    ops::Range,
    path::{Path, PathBuf},
    time::SystemTime,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::{
    fs,
    io::{AsyncReadExt, AsyncSeekExt},
};

use crate::{
    blob::{validate_key, BlobMeta, BlobReader, BlobStore, ListPage},
    StoreError,
};

const TMP_DIR: &str = ".tmp";
const META_DIR: &str = ".meta";
/// A temporary file no live upload holds locked (its writer was killed) is
/// removed by `abort_stale_uploads` once it is this old, whatever its
/// caller's cut-off; the short wait covers the instants between creating a
/// temporary and locking it, and the unlocked metadata and copy temporaries.
const UNLOCKED_GRACE: chrono::Duration = chrono::Duration::seconds(60);

#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        for dir in [root.join(TMP_DIR), root.join(META_DIR)] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| StoreError::io(format!("directory {}", dir.display()), e))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        if key.starts_with(TMP_DIR) || key.starts_with(META_DIR) {
            return Err(StoreError::invalid(
                format!("object key `{key}`"),
                "names starting with .tmp or .meta are reserved",
            ));
        }
        Ok(self.root.join(key))
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join(META_DIR).join(format!("{key}.json"))
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join(TMP_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    async fn read_meta(&self, key: &str) -> Result<BTreeMap<String, String>, StoreError> {
        match fs::read(self.meta_path(key)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::backend(format!("metadata of `{key}`"), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(StoreError::io(format!("metadata of `{key}`"), e)),
        }
    }

    /// Atomically places the finished temp file `tmp` at `key`.
    async fn publish(
        &self,
        key: &str,
        tmp: &Path,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let dest = self.path(key)?;
        let meta_dest = self.meta_path(key);
        if metadata.is_empty() {
            remove_if_exists(&meta_dest).await?;
        } else {
            let meta_tmp = self.temp_path();
            let json = serde_json::to_vec(metadata)
                .map_err(|e| StoreError::backend("encoding metadata", e))?;
            fs::write(&meta_tmp, json)
                .await
                .map_err(|e| StoreError::io(meta_tmp.display().to_string(), e))?;
            rename_into(&meta_tmp, &meta_dest).await?;
        }
        rename_into(tmp, &dest).await
    }

    async fn meta_of(&self, key: &str, path: &Path) -> Result<BlobMeta, StoreError> {
        let stat = fs::metadata(path)
            .await
            .map_err(|e| StoreError::io(format!("object `{key}`"), e))?;
        let etag = {
            use std::os::unix::fs::MetadataExt;
            format!(
                "{:x}.{:x}.{:x}.{}.{}.{}.{}",
                stat.dev(),
                stat.ino(),
                stat.size(),
                stat.mtime(),
                stat.mtime_nsec(),
                stat.ctime(),
                stat.ctime_nsec()
            )
        };
        Ok(BlobMeta {
            key: key.to_string(),
            size: stat.len(),
            last_modified: stat
                .modified()
                .map(DateTime::<Utc>::from)
                .unwrap_or_default(),
            metadata: self.read_meta(key).await?,
            etag: Some(etag),
        })
    }
}

/// A put's body goes to its temporary file in buffers of this size, written
/// on the blocking pool while the next one fills.
const PUT_BUFFER: usize = 1 << 20;
/// Writeback is started every this many bytes (see [`FileSink`]).
const WRITEBACK_CHUNK: u64 = 32 << 20;

/// The writing end of a put: each buffer is written with one blocking
/// `write_all` on the blocking pool while the caller fills the next (so
/// reading the body and writing the file overlap, with no copy but the one
/// out of the body), and every [`WRITEBACK_CHUNK`] bytes the kernel is
/// asked to start writing what is behind, without waiting
/// (`posix_fadvise(DONTNEED)` on dirty pages starts their writeback and
/// leaves them cached). The final fsync then waits for the last chunk only,
/// instead of for the whole object after it has been written (about 0.4 s
/// per GiB here).
struct FileSink {
    /// The file, while no write holds it.
    file: Option<std::fs::File>,
    /// The write in flight: it gives the file and its buffer back.
    in_flight: Option<tokio::task::JoinHandle<WriteDone>>,
    /// Bytes handed to the file, and up to where writeback was started.
    written: u64,
    writeback_started: u64,
}

/// A finished write: the file, its buffer, and how the write went.
type WriteDone = (std::fs::File, Vec<u8>, std::io::Result<()>);

impl FileSink {
    fn new(file: std::fs::File) -> FileSink {
        FileSink {
            file: Some(file),
            in_flight: None,
            written: 0,
            writeback_started: 0,
        }
    }

    /// Waits for the write in flight; gives its buffer back for reuse.
    async fn settle(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let Some(write) = self.in_flight.take() else {
            return Ok(None);
        };
        let (file, buffer, result) = write.await.map_err(std::io::Error::other)?;
        self.file = Some(file);
        result.map(|()| Some(buffer))
    }

    /// Starts writing the first `len` bytes of `buffer` (of [`PUT_BUFFER`]
    /// bytes) once the previous write is done; returns that write's buffer
    /// to fill next.
    async fn write(&mut self, buffer: Vec<u8>, len: usize) -> std::io::Result<Vec<u8>> {
        let spare = self.settle().await?;
        let mut file = self.file.take().expect("settled");
        self.written += len as u64;
        let writeback = (self.written - self.writeback_started >= WRITEBACK_CHUNK)
            .then(|| std::mem::replace(&mut self.writeback_started, self.written))
            .map(|from| (from, self.written - from));
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let result = file.write_all(&buffer[..len]);
            if let (Ok(()), Some((from, len))) = (&result, writeback) {
                // Advice only: the final fsync makes the bytes durable anyway.
                let _ = rustix::fs::fadvise(
                    &file,
                    from,
                    std::num::NonZeroU64::new(len),
                    rustix::fs::Advice::DontNeed,
                );
            }
            (file, buffer, result)
        }));
        Ok(spare.unwrap_or_else(|| vec![0; PUT_BUFFER]))
    }

    /// Waits for the last write, fsyncs, and gives the file back.
    async fn finish(mut self) -> std::io::Result<std::fs::File> {
        self.settle().await?;
        let file = self.file.take().expect("settled");
        tokio::task::spawn_blocking(move || file.sync_all().map(|()| file))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// Removes a temp file when dropped, unless it was published.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn remove_if_exists(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path.display().to_string(), e)),
    }
}

/// Renames `from` onto `to` (creating parents) and fsyncs the directory so
/// the rename survives a crash.
async fn rename_into(from: &Path, to: &Path) -> Result<(), StoreError> {
    let parent = to.parent().map(Path::to_path_buf).unwrap_or_default();
    fs::create_dir_all(&parent)
        .await
        .map_err(|e| StoreError::io(parent.display().to_string(), e))?;
    fs::rename(from, to)
        .await
        .map_err(|e| StoreError::io(to.display().to_string(), e))?;
    let dir = parent.clone();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
        .await
        .map_err(|e| StoreError::backend("fsync task", e))?
        .map_err(|e| StoreError::io(parent.display().to_string(), e))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    /// `copy` hard-links (falling back to a byte copy on filesystems
    /// without links: slower, but the copy still pins the bytes).
    fn copy_shares_bytes(&self) -> bool {
        true
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key))]
    async fn put(
        &self,
        key: &str,
        body: BlobReader,
        metadata: BTreeMap<String, String>,
    ) -> Result<BlobMeta, StoreError> {
        let dest = self.path(key)?;
        let mut tmp = TempFile {
            path: self.temp_path(),
            armed: true,
        };
        // Locked while this upload lives, so `abort_stale_uploads` can tell
        // a killed process's leftover from a slow live upload.
        let path = tmp.path.clone();
        let file = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create_new(&path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(|e| StoreError::io(tmp.path.display().to_string(), std::io::Error::other(e)))?
        .map_err(|e| StoreError::io(tmp.path.display().to_string(), e))?;
        let what = || format!("upload of `{key}`");
        let mut sink = FileSink::new(file);
        let mut body = body;
        let (mut buffer, mut filled) = (vec![0; PUT_BUFFER], 0);
        loop {
            let n = body
                .read(&mut buffer[filled..])
                .await
                .map_err(|e| StoreError::io(what(), e))?;
            filled += n;
            if filled == PUT_BUFFER || (n == 0 && filled > 0) {
                buffer = sink
                    .write(buffer, filled)
                    .await
                    .map_err(|e| StoreError::io(what(), e))?;
                filled = 0;
            }
            if n == 0 {
                break;
            }
        }
        let file = sink.finish().await.map_err(|e| StoreError::io(what(), e))?;
        // Still open (and locked) while it is renamed into place.
        self.publish(key, &tmp.path, &metadata).await?;
        tmp.armed = false;
        drop(file);
        self.meta_of(key, &dest).await
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StoreError> {
        let path = self.path(key)?;
        match self.meta_of(key, &path).await {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<BlobReader, StoreError> {
        let path = self.path(key)?;
        let what = || format!("object `{key}`");
        if range.is_none() {
            return open_whole(path)
                .await
                .map_err(|e| StoreError::io(what(), e));
        }
        let mut file = fs::File::open(&path)
            .await
            .map_err(|e| StoreError::io(what(), e))?;
        match range {
            None => Ok(Box::pin(file)),
            Some(r) => {
                if r.start > r.end {
                    return Err(StoreError::invalid(
                        "byte range",
                        format!("{r:?} is reversed"),
                    ));
                }
                file.seek(SeekFrom::Start(r.start))
                    .await
                    .map_err(|e| StoreError::io(format!("object `{key}`"), e))?;
                Ok(Box::pin(file.take(r.end - r.start)))
            }
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<BlobMeta, StoreError> {
        let src = self.path(from)?;
        let dest = self.path(to)?;
        let metadata = self.read_meta(from).await?;
        let mut tmp = TempFile {
            path: self.temp_path(),
            armed: true,
        };
        // A hard link is an O(1) copy; objects are never modified in place
        // (every put renames a new inode), so sharing the inode is safe.
        if fs::hard_link(&src, &tmp.path).await.is_err() {
            fs::copy(&src, &tmp.path)
                .await
                .map_err(|e| StoreError::io(format!("object `{from}`"), e))?;
        }
        // The copy is a new object: give it a fresh modification time (the
        // sweep's grace period counts from it).
        let tmp_path = tmp.path.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::File::options()
                .write(true)
                .open(&tmp_path)
                .and_then(|f| f.set_modified(SystemTime::now()))
        })
        .await
        .map_err(|e| StoreError::backend("copy task", e))?
        .map_err(|e| StoreError::io(format!("object `{to}`"), e))?;
        self.publish(to, &tmp.path, &metadata).await?;
        tmp.armed = false;
        self.meta_of(to, &dest).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        remove_if_exists(&path).await?;
        remove_if_exists(&self.meta_path(key)).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        // One more than a page tells whether another page follows.
        let mut keys = tokio::task::spawn_blocking(move || {
            walk_keys(
                &root,
                &prefix,
                start_after.as_deref(),
                limit.saturating_add(1),
            )
        })
        .await
        .map_err(|e| StoreError::backend("listing task", e))??;
        let more = keys.len() > limit;
        keys.truncate(limit);
        let mut page = ListPage {
            next: more.then(|| keys.last().cloned()).flatten(),
            ..ListPage::default()
        };
        for key in keys {
            let path = self.root.join(&key);
            match self.meta_of(&key, &path).await {
                Ok(mut meta) => {
                    meta.metadata.clear();
                    page.objects.push(meta);
                }
                // Deleted between the walk and the stat.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(page)
    }
    async fn abort_stale_uploads(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        let dir = self.root.join(TMP_DIR);
        let mut removed = 0;
        let mut entries = fs::read_dir(&dir)
            .await
            .map_err(|e| StoreError::io(dir.display().to_string(), e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| StoreError::io(dir.display().to_string(), e))?
        {
            let Ok(stat) = entry.metadata().await else {
                continue;
            };
            let modified = stat
                .modified()
                .map(DateTime::<Utc>::from)
                .unwrap_or_default();
            let unlocked_for_a_while = modified < Utc::now() - UNLOCKED_GRACE && {
                let path = entry.path();
                tokio::task::spawn_blocking(move || {
                    std::fs::File::open(&path).is_ok_and(|f| f.try_lock().is_ok())
                })
                .await
                .unwrap_or(false)
            };
            if modified < older_than || unlocked_for_a_while {
                remove_if_exists(&entry.path()).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Up to `limit` object keys under `root` that start with `prefix` and sort
/// after `start_after`, in lexicographic order. Walks directories in key
/// order, skipping subtrees that sort before `start_after` and stopping once
/// it has `limit` keys, so paging through a large store costs one pass in
/// all (not one full walk per page). Starts at the deepest directory the
/// prefix names.
fn walk_keys(
    root: &Path,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let start_dir = match prefix.rfind('/') {
        Some(i) => &prefix[..=i],
        None => "",
    };
    let mut walk = OrderedWalk {
        root,
        prefix,
        start_after,
        limit,
        keys: Vec::new(),
    };
    walk.visit(start_dir)?;
    Ok(walk.keys)
}

struct OrderedWalk<'a> {
    root: &'a Path,
    prefix: &'a str,
    start_after: Option<&'a str>,
    limit: usize,
    keys: Vec<String>,
}

impl OrderedWalk<'_> {
    /// Visits the directory whose keys start with `dir_key` (`""` or ending
    /// in `/`).
    fn visit(&mut self, dir_key: &str) -> Result<(), StoreError> {
        let dir = self.root.join(dir_key);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(dir.display().to_string(), e)),
        };
        // A directory `d` holds keys `d/…`: sorting children by `name/` for
        // directories and `name` for files makes the walk's order the keys'.
        let mut children = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(dir.display().to_string(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if dir_key.is_empty() && (name == TMP_DIR || name == META_DIR) {
                continue;
            }
            let is_dir = entry
                .file_type()
                .map_err(|e| StoreError::io(entry.path().display().to_string(), e))?
                .is_dir();
            let key = if is_dir {
                format!("{dir_key}{name}/")
            } else {
                format!("{dir_key}{name}")
            };
            children.push((key, is_dir));
        }
        children.sort_unstable();
        for (key, is_dir) in children {
            if self.keys.len() >= self.limit {
                break;
            }
            if is_dir {
                let under_prefix = key.starts_with(self.prefix) || self.prefix.starts_with(&key);
                // Every key in the subtree sorts before `start_after`.
                let all_before = self
                    .start_after
                    .is_some_and(|after| after > key.as_str() && !after.starts_with(&key));
                if under_prefix && !all_before {
                    self.visit(&key)?;
                }
            } else if key.starts_with(self.prefix)
                && self.start_after.is_none_or(|after| key.as_str() > after)
            {
                self.keys.push(key);
            }
        }
        Ok(())
    }
}

/// Objects up to this size are read whole by [`open_whole`].
const READ_WHOLE_BYTES: u64 = 256 * 1024;

/// A reader of the whole file at `path`: a small object (a build-cache
/// object, most of them) is opened and read in one blocking call, where a
/// `tokio::fs::File` would take one blocking-pool hop to open, one per
/// read and one to see the end; a large one is streamed.
async fn open_whole(path: PathBuf) -> std::io::Result<BlobReader> {
    tokio::task::spawn_blocking(move || -> std::io::Result<BlobReader> {
        let mut file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        if len <= READ_WHOLE_BYTES {
            let mut bytes = Vec::with_capacity(len as usize + 1);
            std::io::Read::read_to_end(&mut file, &mut bytes)?;
            Ok(Box::pin(std::io::Cursor::new(bytes)))
        } else {
            Ok(Box::pin(fs::File::from_std(file)))
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(keys: &[&str]) -> (tempfile::TempDir, FsBlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path()).unwrap();
        for key in keys {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, key).unwrap();
        }
        (dir, store)
    }

    #[test]
    fn the_walk_yields_keys_in_byte_order_even_where_a_directory_name_is_a_prefix() {
        // `a-c` < `a/b` < `a0` bytewise ('-' < '/' < '0'): a naive
        // directory walk would list `a/b` first.
        let (dir, _store) = store_with(&["a/b", "a-c", "a0", "a/a/z", "b"]);
        let all = walk_keys(dir.path(), "", None, 100).unwrap();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        assert_eq!(all, ["a-c", "a/a/z", "a/b", "a0", "b"]);
    }

    #[tokio::test]
    async fn paging_visits_every_key_once_in_order() {
        let keys: Vec<String> = (0..57)
            .map(|i| format!("artifacts/{:02x}/{i:03}", i % 7))
            .chain(["artifacts-x".to_string(), "staging/u".to_string()])
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (_dir, store) = store_with(&refs);
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list("artifacts/", after.as_deref(), 10)
                .await
                .unwrap();
            assert!(page.objects.len() <= 10);
            seen.extend(page.objects.iter().map(|m| m.key.clone()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut expected: Vec<String> = keys
            .into_iter()
            .filter(|k| k.starts_with("artifacts/"))
            .collect();
        expected.sort();
        assert_eq!(seen, expected);
    }

    /// A killed writer's temporary (unlocked) goes after the grace minute;
    /// a live one (locked), however old, stays until the caller's cut-off.
    #[tokio::test]
    async fn unlocked_leftovers_go_after_a_minute_and_locked_uploads_stay() {
        let (dir, store) = store_with(&[]);
        let tmp = dir.path().join(TMP_DIR);
        let old = SystemTime::now() - std::time::Duration::from_secs(120);
        let age = |name: &str| {
            let f = std::fs::File::create(tmp.join(name)).unwrap();
            f.set_modified(old).unwrap();
            f
        };
        drop(age("killed"));
        let live = age("live");
        live.lock().unwrap();
        let fresh = std::fs::File::create(tmp.join("fresh")).unwrap();
        let long_ago = Utc::now() - chrono::Duration::days(7);

        assert_eq!(store.abort_stale_uploads(long_ago).await.unwrap(), 1);
        let mut left: Vec<String> = std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["fresh", "live"]);
        // Past the caller's cut-off everything goes, as before.
        assert_eq!(
            store
                .abort_stale_uploads(Utc::now() + chrono::Duration::seconds(1))
                .await
                .unwrap(),
            2
        );
        drop((live, fresh));
    }
}
