//! Datasets: the procedural grade-school math task of the embedded default, the one question/answer
//! record and its loader (JSONL, or verl's Parquet), and the JSONL reader and writers that the
//! SFT, RL and evaluation recipes use, and the decontamination test against the evaluation sets.

pub mod decontamination;
pub mod jsonl;
pub mod parquet;
pub mod procedural;
pub mod qa;

pub use jsonl::{read_jsonl, read_jsonl_lines, read_jsonl_numbered};
pub use qa::{
    final_answer, load_qa, load_qa_report, GoldAnswers, QaLoad, QaRecord, RecordUnit, QUESTION_KEYS,
};
