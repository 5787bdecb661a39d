//! verl's RL data as Parquet: each row becomes the JSON object a JSONL line would be, so the
//! QA loader applies one set of field rules to both (`prompt` as a list of `{role, content}`,
//! `reward_model.ground_truth`, `data_source`).
//!
//! The row API of the `parquet` crate is used rather than Arrow: it reads nested lists and
//! structs as they are, and costs a fraction of Arrow's build.

use std::fs::File;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;

use crate::{Error, Result};

/// Whether `path` names a Parquet file (by its extension, as verl and `datasets` write them).
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// The rows of a Parquet file as JSON objects, each with its 1-based row number. Errors name
/// the file, and the row when one cannot be decoded.
pub fn read_parquet_rows(path: &Path) -> Result<Vec<(usize, Value)>> {
    let bad = |message: String| Error::Input(format!("{}: {message}", path.display()));
    let file = File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| bad(format!("cannot read its rows: {e}")))?;
    rows.enumerate()
        .map(|(i, row)| {
            let row =
                row.map_err(|e| Error::Input(format!("{}: row {}: {e}", path.display(), i + 1)))?;
            Ok((i + 1, row.to_json_value()))
        })
        .collect()
}

/// The checker's data set for a verl `data_source` (`openai/gsm8k` → `gsm8k`, `lighteval/MATH`
/// → `math`); `None` for a source whose answers follow no known set's rules.
pub fn dataset_of_source(source: &str) -> Option<&'static str> {
    // The Hub name's last part, so an organisation prefix or a mirror's does not matter.
    let name = source
        .rsplit('/')
        .next()
        .unwrap_or(source)
        .to_ascii_lowercase();
    match name.as_str() {
        "gsm8k" => Some("gsm8k"),
        "math" | "math-lighteval" | "competition_math" | "hendrycks_math" => Some("math"),
        "math-500" | "math500" => Some("math500"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verl_sources_map_to_the_checkers_sets() {
        assert_eq!(dataset_of_source("openai/gsm8k"), Some("gsm8k"));
        assert_eq!(dataset_of_source("lighteval/MATH"), Some("math"));
        assert_eq!(
            dataset_of_source("DigitalLearningGmbH/MATH-lighteval"),
            Some("math")
        );
        assert_eq!(dataset_of_source("HuggingFaceH4/MATH-500"), Some("math500"));
        assert_eq!(dataset_of_source("my_org/my_data"), None);
    }

    #[test]
    fn a_file_that_is_not_parquet_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("train.parquet");
        std::fs::write(&path, "{\"question\": \"1+1?\"}\n").expect("written");
        let err = read_parquet_rows(&path).unwrap_err().to_string();
        assert!(
            err.contains("train.parquet: not a readable Parquet file"),
            "{err}"
        );
        assert!(is_parquet(&path) && !is_parquet(Path::new("train.jsonl")));
    }
}
