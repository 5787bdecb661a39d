//! Reading JSONL files with errors that name the file and line.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// The JSON values of a JSONL file with their 1-based line numbers; blank lines are skipped.
pub fn read_jsonl(path: &Path) -> Result<Vec<(usize, Value)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rows = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not valid JSON", path.display(), n + 1))?;
        rows.push((n + 1, value));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, "{\"a\": 1}\n\n{\"a\": 2\n").unwrap();
        let err = format!("{:#}", read_jsonl(&path).unwrap_err());
        assert!(err.contains("x.jsonl:3"), "{err}");
        std::fs::write(&path, "{\"a\": 1}\n\n{\"a\": 2}\n").unwrap();
        let rows = read_jsonl(&path).unwrap();
        assert_eq!(rows.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 3]);
    }
}
