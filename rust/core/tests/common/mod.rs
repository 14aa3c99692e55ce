//! Helpers shared by the property tests: the kept corpus of seed inputs.

use std::fs;
use std::path::PathBuf;

/// Every file of `tests/corpus/<kind>/`, sorted by name, with its bytes.
pub fn corpus(kind: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).expect("corpus file");
            (p, bytes)
        })
        .collect()
}
