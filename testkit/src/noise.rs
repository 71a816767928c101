//! Incompressible test data (xorshift64), deterministic per seed: for
//! trees that must take a measurable time to archive, upload or extract.

use std::{fs, io::Write, path::Path};

/// `len` bytes of noise from `seed` (non-zero).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes `count` files `f0`, `f1`… of `bytes` noise each under `dir`
/// (created), streamed so no file is held in memory.
pub fn noise_files(dir: &Path, count: usize, bytes: usize) {
    fs::create_dir_all(dir).expect("create the noise directory");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..count {
        let file = fs::File::create(dir.join(format!("f{i}"))).expect("create a noise file");
        let mut out = std::io::BufWriter::new(file);
        for _ in 0..bytes / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.write_all(&x.to_le_bytes()).expect("write noise");
        }
        out.flush().expect("write noise");
    }
}
