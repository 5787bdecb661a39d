//! The manifest of a checkpoint: every file's size and XXH3-64, written last, so a resumed run
//! can tell a complete checkpoint from one a crash, a full disk or a bad copy left damaged, and
//! fall back to the one before it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::{Error, Result};

/// File of the manifest inside a checkpoint.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What a checkpoint directory holds, file by file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    files: BTreeMap<String, FileEntry>,
}

/// One file's size and content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileEntry {
    bytes: u64,
    /// XXH3-64 of the content, 16 hex digits.
    xxh3: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Every file of the manifest is there with its size and hash.
    Complete,
    /// No manifest: a checkpoint written before manifests existed, taken as it is.
    Unverified,
}

fn entry_of(path: &Path) -> Result<FileEntry> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileEntry {
        bytes,
        xxh3: format!("{:016x}", hasher.digest()),
    })
}

/// The regular files of `dir` by name, the manifest excluded.
fn files_of(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != MANIFEST_FILE && entry.path().is_file() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Writes the manifest of every file now in `dir` (call it after the last of them is written).
pub fn write_manifest(dir: &Path) -> Result<()> {
    let files = files_of(dir)?
        .into_iter()
        .map(|name| Ok((name.clone(), entry_of(&dir.join(&name))?)))
        .collect::<Result<_>>()?;
    let json = serde_json::to_vec_pretty(&Manifest { files }).expect("a manifest serialises");
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))
}

/// Checks the files of the checkpoint in `dir` against its manifest; the error names the first
/// file that is missing or differs.
pub fn verify(dir: &Path) -> Result<Verified> {
    let path = dir.join(MANIFEST_FILE);
    if !path.is_file() {
        return Ok(Verified::Unverified);
    }
    let damaged = |message: String| Error::Checkpoint {
        path: dir.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| damaged(format!("malformed {MANIFEST_FILE}: {e}")))?;
    for (name, expected) in &manifest.files {
        let file = dir.join(name);
        if !file.is_file() {
            return Err(damaged(format!("{name} is missing")));
        }
        let found = entry_of(&file)?;
        if found.bytes != expected.bytes {
            return Err(damaged(format!(
                "{name} has {} bytes, the manifest says {}",
                found.bytes, expected.bytes
            )));
        }
        if found.xxh3 != expected.xxh3 {
            return Err(damaged(format!(
                "{name} does not match its checksum in {MANIFEST_FILE}"
            )));
        }
    }
    Ok(Verified::Complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_missing_or_truncated_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(verify(d).unwrap(), Verified::Unverified);
        std::fs::write(d.join("a.bin"), [1u8, 2, 3, 4]).unwrap();
        std::fs::write(d.join("b.json"), "{}").unwrap();
        write_manifest(d).unwrap();
        assert_eq!(verify(d).unwrap(), Verified::Complete);

        std::fs::write(d.join("a.bin"), [1u8, 2, 3, 5]).unwrap();
        let err = verify(d).unwrap_err().to_string();
        assert!(err.contains("a.bin does not match its checksum"), "{err}");
        std::fs::write(d.join("a.bin"), [1u8, 2]).unwrap();
        let err = verify(d).unwrap_err().to_string();
        assert!(
            err.contains("a.bin has 2 bytes, the manifest says 4"),
            "{err}"
        );
        std::fs::remove_file(d.join("b.json")).unwrap();
        std::fs::write(d.join("a.bin"), [1u8, 2, 3, 4]).unwrap();
        let err = verify(d).unwrap_err().to_string();
        assert!(err.contains("b.json is missing"), "{err}");
    }
}
