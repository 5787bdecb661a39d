//! Datasets: the procedural grade-school math task of the embedded default, and the JSONL formats
//! that the SFT, RL and evaluation recipes read.

pub mod jsonl;
pub mod procedural;
