//! Regenerates `schemas/json/*.json` from the contract types.
//! Run `cargo run -p runcache-schemas --bin runcache-schemagen` after changing
//! a type in `schemas/src/`, and commit the result.

use std::{fs, path::PathBuf};

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json");
    fs::create_dir_all(&dir)?;
    for (name, text) in runcache_schemas::json_schema::all() {
        fs::write(dir.join(&name), text)?;
        println!("wrote schemas/json/{name}");
    }
    Ok(())
}
