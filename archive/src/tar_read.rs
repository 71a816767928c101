//! Reads a tar stream header by header, with bounded memory whatever the
//! archive claims.
//!
//! Touches only the stream it wraps. This is a small parser of our own rather
//! than `tar::Archive` because the latter reads pax and GNU long-name
//! payloads into memory whole, however large their header says they are,
//! which a decompression bomb can exploit; here each is capped. `tar::Header`
//! still decodes the fields.
//!
//! Understood: ustar, GNU and v7 headers; pax local headers (`path`,
//! `linkpath`, `size`, `mtime`; the rest ignored); GNU long names and long
//! link names. Pax global headers are skipped. Whether an entry is allowed is
//! not decided here but in `extract`.

use std::io::{self, Read};

use tar::{EntryType, Header};

use crate::tar_write::{Mtime, BLOCK};

/// A pax header larger than this is refused (GNU tar's are ~100 bytes).
const MAX_PAX_BYTES: u64 = 1024 * 1024;
/// A GNU long name larger than this is refused (PATH_MAX is 4096).
const MAX_LONG_NAME_BYTES: u64 = 64 * 1024;

/// One entry's header, with its pax and long-name extensions applied.
#[derive(Debug, Clone)]
pub(crate) struct TarEntry {
    pub entry_type: EntryType,
    /// Raw name bytes, as stored.
    pub name: Vec<u8>,
    /// Raw link target bytes (symlinks and hard links); empty otherwise.
    pub link: Vec<u8>,
    pub mode: u32,
    pub mtime: Mtime,
    /// Bytes of data following the header.
    pub size: u64,
    /// The entry carries GNU sparse-file pax keys: its data is a sparse map,
    /// not the file's content.
    pub sparse: bool,
}

/// A tar stream being read from `inner`.
pub(crate) struct TarReader<R> {
    inner: R,
    /// Unread data bytes of the current entry.
    data_left: u64,
    /// Padding after the current entry's data.
    padding_left: u64,
}

fn corrupt(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            data_left: 0,
            padding_left: 0,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next entry, skipping whatever is left of the current one; `None`
    /// at the end-of-archive marker. The stream must reach that marker: an
    /// archive that just stops is truncated.
    pub fn next_entry(&mut self) -> io::Result<Option<TarEntry>> {
        let left = self.data_left + self.padding_left;
        self.skip(left)?;
        self.data_left = 0;
        self.padding_left = 0;

        let mut pax: Option<Vec<u8>> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let mut header = Header::new_old();
            if !self.read_block(header.as_mut_bytes())? {
                return Err(corrupt(
                    "the tar stream ends without an end-of-archive marker (truncated)",
                ));
            }
            if header.as_bytes().iter().all(|b| *b == 0) {
                if pax.is_some() || long_name.is_some() || long_link.is_some() {
                    return Err(corrupt("an extended header is not followed by an entry"));
                }
                return Ok(None);
            }
            verify_checksum(&header)?;
            let size = header.entry_size()?;
            let entry_type = header.entry_type();
            match entry_type {
                EntryType::XHeader => {
                    let payload = self.read_payload(size, MAX_PAX_BYTES, "pax header")?;
                    if pax.replace(payload).is_some() {
                        return Err(corrupt("two pax headers describe the same entry"));
                    }
                    continue;
                }
                EntryType::XGlobalHeader => {
                    self.read_payload(size, MAX_PAX_BYTES, "pax global header")?;
                    continue;
                }
                EntryType::GNULongName => {
                    let payload = self.read_payload(size, MAX_LONG_NAME_BYTES, "GNU long name")?;
                    if long_name.replace(trim_nul(payload)).is_some() {
                        return Err(corrupt("two GNU long names describe the same entry"));
                    }
                    continue;
                }
                EntryType::GNULongLink => {
                    let payload = self.read_payload(size, MAX_LONG_NAME_BYTES, "GNU long link")?;
                    if long_link.replace(trim_nul(payload)).is_some() {
                        return Err(corrupt("two GNU long links describe the same entry"));
                    }
                    continue;
                }
                _ => {}
            }

            let mtime = header.mtime()?;
            let mut entry = TarEntry {
                entry_type,
                name: long_name.unwrap_or_else(|| header.path_bytes().into_owned()),
                link: long_link.unwrap_or_else(|| {
                    header
                        .link_name_bytes()
                        .map(|link| link.into_owned())
                        .unwrap_or_default()
                }),
                mode: header.mode()?,
                mtime: Mtime {
                    secs: i64::try_from(mtime).unwrap_or(i64::MAX),
                    nanos: 0,
                },
                size,
                sparse: false,
            };
            if let Some(pax) = pax {
                apply_pax(&mut entry, &pax)?;
            }
            self.data_left = entry.size;
            self.padding_left = padding(entry.size);
            return Ok(Some(entry));
        }
    }

    /// Reads up to `buf.len()` bytes of the current entry's data; 0 at its
    /// end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.data_left.min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(0) => return Err(corrupt("the tar stream ends inside an entry (truncated)")),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.data_left -= n as u64;
        Ok(n)
    }

    /// Reads one 512-byte block; `false` on a clean end of stream before it.
    fn read_block(&mut self, block: &mut [u8]) -> io::Result<bool> {
        let mut filled = 0;
        while filled < block.len() {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(corrupt("the tar stream ends inside a header (truncated)")),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads an extension payload of `size` bytes (plus padding), refusing
    /// one over `max`.
    fn read_payload(&mut self, size: u64, max: u64, what: &str) -> io::Result<Vec<u8>> {
        if size > max {
            return Err(corrupt(format!(
                "a {what} of {size} bytes is larger than the {max} bytes allowed"
            )));
        }
        let mut payload = vec![0; size as usize];
        self.inner.read_exact(&mut payload).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                corrupt(format!("the tar stream ends inside a {what} (truncated)"))
            } else {
                e
            }
        })?;
        self.skip(padding(size))?;
        Ok(payload)
    }

    fn skip(&mut self, len: u64) -> io::Result<()> {
        let skipped = io::copy(&mut (&mut self.inner).take(len), &mut io::sink())?;
        if skipped < len {
            return Err(corrupt("the tar stream ends inside an entry (truncated)"));
        }
        Ok(())
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn trim_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(end) = bytes.iter().position(|b| *b == 0) {
        bytes.truncate(end);
    }
    bytes
}

/// The header checksum is the sum of its bytes with the checksum field read
/// as spaces; historic tars summed signed bytes, so accept either.
fn verify_checksum(header: &Header) -> io::Result<()> {
    let stored = header.cksum()?;
    let bytes = header.as_bytes();
    let field = 148..156;
    let (mut unsigned, mut signed) = (0u32, 0i32);
    for (i, byte) in bytes.iter().enumerate() {
        let byte = if field.contains(&i) { b' ' } else { *byte };
        unsigned += u32::from(byte);
        signed += i32::from(byte as i8);
    }
    if stored == unsigned || i64::from(stored) == i64::from(signed) {
        Ok(())
    } else {
        Err(corrupt("a tar header checksum does not match"))
    }
}

fn apply_pax(entry: &mut TarEntry, pax: &[u8]) -> io::Result<()> {
    for (key, value) in pax_records(pax)? {
        match key {
            b"path" => entry.name = value.to_vec(),
            b"linkpath" => entry.link = value.to_vec(),
            b"size" => {
                entry.size = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| corrupt("a pax `size` is not a number"))?;
            }
            b"mtime" => {
                entry.mtime = std::str::from_utf8(value)
                    .ok()
                    .and_then(Mtime::from_pax)
                    .ok_or_else(|| corrupt("a pax `mtime` is not a time"))?;
            }
            key if key.starts_with(b"GNU.sparse.") => entry.sparse = true,
            _ => {}
        }
    }
    Ok(())
}

/// Splits a pax payload into `(key, value)` records. Each record is
/// `"<len> <key>=<value>\n"` with `len` counting the whole record, so values
/// may hold newlines (which is why `tar::PaxExtensions`, which splits on
/// them, is not used).
fn pax_records(mut data: &[u8]) -> io::Result<Vec<(&[u8], &[u8])>> {
    let malformed = || corrupt("a pax header record is malformed");
    let mut records = Vec::new();
    while !data.is_empty() && data[0] != 0 {
        let space = data.iter().position(|b| *b == b' ').ok_or_else(malformed)?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|len| len.parse().ok())
            .ok_or_else(malformed)?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(malformed());
        }
        let key_value = &data[space + 1..len - 1];
        let equals = key_value
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(malformed)?;
        records.push((&key_value[..equals], &key_value[equals + 1..]));
        data = &data[len..];
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_honour_lengths_not_newlines() {
        let records = pax_records(b"18 path=a\nb/c.txt\n11 size=42\n").expect("valid");
        assert_eq!(
            records,
            vec![
                (&b"path"[..], &b"a\nb/c.txt"[..]),
                (&b"size"[..], &b"42"[..])
            ]
        );
        for bad in [
            &b"5 path=abc\n"[..],
            b"99 path=x\n",
            b"x path=y\n",
            b"8 pathx\n",
        ] {
            assert!(
                pax_records(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
