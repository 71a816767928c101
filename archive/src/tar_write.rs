//! Writes a POSIX (pax) tar stream, entry by entry, as GNU `tar --posix`
//! does: a ustar header per entry, preceded by a pax extended header when the
//! name or link target is longer than 100 bytes, the mtime has sub-second
//! precision, or the size does not fit the ustar field.
//!
//! Touches only the output stream and the file contents it is handed. Owner
//! ids are written as 0 with no names, so the same tree archives to the same
//! bytes on any runner.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tar::{EntryType, Header};

use crate::ArchiveError;

pub(crate) const BLOCK: u64 = 512;
/// The ustar `name` and `linkname` fields hold this many bytes.
const USTAR_NAME_MAX: usize = 100;
/// The largest size the 11 octal digits of the ustar `size` field can hold.
const USTAR_SIZE_MAX: u64 = 0o777_7777_7777;

/// A modification time with nanoseconds, possibly before 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mtime {
    pub secs: i64,
    /// Always below 1e9; added to `secs` (so -1.5 s is `{ secs: -2, nanos: 5e8 }`).
    pub nanos: u32,
}

impl Mtime {
    pub fn from_metadata(meta: &std::fs::Metadata) -> Mtime {
        use std::os::unix::fs::MetadataExt;
        Mtime {
            secs: meta.mtime(),
            nanos: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
        }
    }

    /// As a `SystemTime`; the epoch when out of its range (archive mtimes
    /// are untrusted and may be absurd).
    pub fn to_system_time(self) -> SystemTime {
        let whole = Duration::from_secs(self.secs.unsigned_abs());
        let time = if self.secs >= 0 {
            UNIX_EPOCH.checked_add(whole)
        } else {
            UNIX_EPOCH.checked_sub(whole)
        };
        time.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(self.nanos))))
            .unwrap_or(UNIX_EPOCH)
    }

    pub fn to_file_time(self) -> filetime::FileTime {
        filetime::FileTime::from_unix_time(self.secs, self.nanos)
    }

    /// The pax `mtime` value: decimal seconds, with a fraction if any.
    fn to_pax(self) -> String {
        match (self.secs, self.nanos) {
            (secs, 0) => secs.to_string(),
            (secs, nanos) if secs >= 0 => format!("{secs}.{nanos:09}"),
            (secs, nanos) => format!("-{}.{:09}", -(secs + 1), 1_000_000_000 - nanos),
        }
    }

    /// Parses a pax `mtime` value (`[-]seconds[.fraction]`).
    pub fn from_pax(value: &str) -> Option<Mtime> {
        let (negative, value) = match value.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        let (int, frac) = value.split_once('.').unwrap_or((value, ""));
        if int.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let int: i64 = int.parse().ok()?;
        let mut nanos: u32 = 0;
        for (i, digit) in frac.bytes().take(9).enumerate() {
            nanos += u32::from(digit - b'0') * 10u32.pow(8 - i as u32);
        }
        Some(match (negative, nanos) {
            (false, _) => Mtime { secs: int, nanos },
            (true, 0) => Mtime { secs: -int, nanos },
            (true, _) => Mtime {
                secs: -int - 1,
                nanos: 1_000_000_000 - nanos,
            },
        })
    }
}

/// What an entry is, for [`TarWriter::write_header`].
pub(crate) enum EntryKind<'a> {
    File {
        size: u64,
    },
    Dir,
    Symlink {
        target: &'a [u8],
    },
    /// Another name for a file written earlier in the archive (`target`:
    /// that entry's name).
    HardLink {
        target: &'a [u8],
    },
}

/// A tar stream being written to `out`.
pub(crate) struct TarWriter<W> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            buf: vec![0; 256 * 1024],
        }
    }

    /// Writes the header(s) of one entry. A file's data must follow, through
    /// [`TarWriter::write_file_data`].
    pub fn write_header(
        &mut self,
        name: &[u8],
        kind: &EntryKind<'_>,
        mode: u32,
        mtime: Mtime,
    ) -> io::Result<()> {
        let (entry_type, size, link) = match kind {
            EntryKind::File { size } => (EntryType::Regular, *size, &b""[..]),
            EntryKind::Dir => (EntryType::Directory, 0, &b""[..]),
            EntryKind::Symlink { target } => (EntryType::Symlink, 0, *target),
            EntryKind::HardLink { target } => (EntryType::Link, 0, *target),
        };

        let mut pax = Vec::new();
        if name.len() > USTAR_NAME_MAX {
            pax_record(&mut pax, "path", name);
        }
        if link.len() > USTAR_NAME_MAX {
            pax_record(&mut pax, "linkpath", link);
        }
        if mtime.nanos != 0 || mtime.secs < 0 {
            pax_record(&mut pax, "mtime", mtime.to_pax().as_bytes());
        }
        if size > USTAR_SIZE_MAX {
            pax_record(&mut pax, "size", size.to_string().as_bytes());
        }
        if !pax.is_empty() {
            let header = ustar_header(
                b"././@PaxHeader",
                EntryType::XHeader,
                b"",
                pax.len() as u64,
                0o644,
                0,
            )?;
            self.out.write_all(header.as_bytes())?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }

        let secs = u64::try_from(mtime.secs).unwrap_or(0);
        let header = ustar_header(name, entry_type, link, size, mode & 0o7777, secs)?;
        self.out.write_all(header.as_bytes())
    }

    /// Copies exactly `size` bytes of `file` (read from `path`) as the data
    /// of the entry whose header was just written. A file that shrank since
    /// its size was taken is an error: the archive would otherwise be
    /// malformed. One that grew is cut at `size`, as GNU tar does.
    pub fn write_file_data(
        &mut self,
        file: &mut impl Read,
        path: &Path,
        size: u64,
    ) -> Result<(), ArchiveError> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(ArchiveError::Io {
                        path: path.to_owned(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file shrank while it was being archived; save again \
                             once nothing is writing to it",
                        ),
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ArchiveError::io(path)(e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(|source| ArchiveError::Output { source })?;
            left -= n as u64;
        }
        self.pad(size)
            .map_err(|source| ArchiveError::Output { source })
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns `out`.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0; 2 * BLOCK as usize])?;
        Ok(self.out)
    }

    /// Zero-fills the last block of data that was `len` bytes long.
    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK) as usize;
        if rem != 0 {
            self.out.write_all(&[0; BLOCK as usize][rem..])?;
        }
        Ok(())
    }
}

/// A ustar header. Names are written as raw bytes (`tar::Header::set_path`
/// refuses `..`, which actions/cache names legitimately hold), cut at 100
/// bytes when a pax record carries the full one.
fn ustar_header(
    name: &[u8],
    entry_type: EntryType,
    link: &[u8],
    size: u64,
    mode: u32,
    mtime: u64,
) -> io::Result<Header> {
    let mut header = Header::new_ustar();
    {
        let old = header.as_old_mut();
        let n = name.len().min(USTAR_NAME_MAX);
        old.name[..n].copy_from_slice(&name[..n]);
        let n = link.len().min(USTAR_NAME_MAX);
        old.linkname[..n].copy_from_slice(&link[..n]);
    }
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_device_major(0)?;
    header.set_device_minor(0)?;
    header.set_cksum();
    Ok(header)
}

/// Appends one pax record, `"<len> <key>=<value>\n"`, where `len` counts the
/// whole record including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        let mut out = Vec::new();
        pax_record(&mut out, "path", b"abc");
        assert_eq!(out, b"12 path=abc\n");
        // Crossing from 2 to 3 digits.
        let value = vec![b'x'; 91];
        let mut out = Vec::new();
        pax_record(&mut out, "path", &value);
        assert_eq!(out.len(), 101);
        assert!(out.starts_with(b"101 path="));
    }

    #[test]
    fn mtime_pax_round_trips() {
        for mtime in [
            Mtime {
                secs: 1_700_000_000,
                nanos: 123_456_789,
            },
            Mtime {
                secs: 1_700_000_000,
                nanos: 0,
            },
            Mtime {
                secs: -2,
                nanos: 500_000_000,
            },
            Mtime { secs: -3, nanos: 0 },
        ] {
            assert_eq!(
                Mtime::from_pax(&mtime.to_pax()),
                Some(mtime),
                "{}",
                mtime.to_pax()
            );
        }
        assert_eq!(
            Mtime {
                secs: -2,
                nanos: 500_000_000
            }
            .to_pax(),
            "-1.500000000"
        );
        assert_eq!(
            Mtime::from_pax("1700000000.5"),
            Some(Mtime {
                secs: 1_700_000_000,
                nanos: 500_000_000
            })
        );
        assert_eq!(Mtime::from_pax("abc"), None);
        assert_eq!(Mtime::from_pax("1.2x"), None);
    }
}
