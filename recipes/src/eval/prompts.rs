//! The prompt formats of the Qwen2.5-Math evaluation: `qwen25-math-cot` (chain of thought) and
//! `tir` (tool-integrated reasoning), each a system prompt rendered with the model's chat
//! template, and the 5-shot exemplars the reference puts before multiple-choice questions.
//!
//! Few-shot, as the reference's `construct_prompt` does for `qwen25-math-cot`: the exemplars are
//! joined into the one user turn (`q + "\n" + a`, separated by blank lines) before the question.
//! mmlu_stem always gets its 5 exemplars (`--num_shots 5`); gaokao_math_qa and cn_middle_school
//! get the 5 gaokao exemplars only when the gold is a choice letter (`--adapt_few_shot`); every
//! other set is zero-shot. TIR uses the same exemplars (the reference has no TIR few-shot set for
//! these data sets).

use std::sync::OnceLock;

use anyhow::{Context, Result};
use mathrl::data::QaRecord;
use mathrl::tokenizer::ChatMessage;
use mathrl::Tokenizer;
use serde::{Deserialize, Serialize};

/// The system prompt of `qwen25-math-cot`.
pub const COT_SYSTEM: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";

/// The system prompt of tool-integrated reasoning (Qwen2.5-Math-Instruct's TIR prompt).
pub const TIR_SYSTEM: &str = "Please integrate natural language reasoning with programs to solve the problem above, and put your final answer within \\boxed{}.";

/// How a question is put to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptFormat {
    /// Chain of thought with the `qwen25-math-cot` system prompt.
    #[serde(rename = "qwen25-math-cot")]
    Cot,
    /// Tool-integrated reasoning: the TIR system prompt; python blocks are executed.
    Tir,
}

impl PromptFormat {
    /// TIR when `tir`, else chain of thought (the recipes' `tir` key).
    pub fn of_tir(tir: bool) -> Self {
        if tir {
            PromptFormat::Tir
        } else {
            PromptFormat::Cot
        }
    }

    /// The system prompt of this format.
    pub fn system_prompt(self) -> &'static str {
        match self {
            PromptFormat::Cot => COT_SYSTEM,
            PromptFormat::Tir => TIR_SYSTEM,
        }
    }
}

/// The exemplars of `few_shot.json`: (question, answer) pairs per exemplar set.
#[derive(Debug, Deserialize)]
struct FewShot {
    mmlu_stem: Vec<(String, String)>,
    gaokao: Vec<(String, String)>,
}

fn few_shot() -> &'static FewShot {
    static FEW_SHOT: OnceLock<FewShot> = OnceLock::new();
    FEW_SHOT.get_or_init(|| {
        serde_json::from_str(include_str!("few_shot.json"))
            .expect("few_shot.json is embedded at build time and checked by a test")
    })
}

/// The exemplars the reference shows before this item's question (empty: zero-shot).
pub fn exemplars(item: &QaRecord) -> &'static [(String, String)] {
    let is_choice = matches!(item.gold_or_empty().trim(), "A" | "B" | "C" | "D" | "E");
    match item.dataset.as_deref().unwrap_or_default() {
        "mmlu_stem" => &few_shot().mmlu_stem,
        "gaokao_math_qa" | "cn_middle_school" if is_choice => &few_shot().gaokao,
        _ => &[],
    }
}

/// The user turn: the exemplars (if any), then the question.
pub fn user_message(item: &QaRecord) -> String {
    let demos = exemplars(item);
    if demos.is_empty() {
        return item.question.clone();
    }
    let demo_text: Vec<String> = demos.iter().map(|(q, a)| format!("{q}\n{a}")).collect();
    format!("{}\n\n{}", demo_text.join("\n\n"), item.question)
}

/// The full prompt text of `item` in `format`, rendered with the tokenizer's chat template.
pub fn render_prompt(
    tokenizer: &Tokenizer,
    format: PromptFormat,
    item: &QaRecord,
) -> Result<String> {
    let messages = [
        ChatMessage::new("system", format.system_prompt()),
        ChatMessage::new("user", user_message(item)),
    ];
    tokenizer
        .apply_chat_template(&messages, true)
        .with_context(|| {
            format!(
                "rendering the prompt of {}:{}",
                item.dataset.as_deref().unwrap_or_default(),
                item.line
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(dataset: &str, gold: &str) -> QaRecord {
        QaRecord {
            dataset: Some(dataset.into()),
            line: 1,
            ..QaRecord::new("What is 1+1?", gold)
        }
    }

    #[test]
    fn few_shot_follows_the_reference_rules() {
        assert_eq!(few_shot().mmlu_stem.len(), 5);
        assert_eq!(few_shot().gaokao.len(), 5);
        let mmlu = user_message(&item("mmlu_stem", "B"));
        assert!(mmlu.starts_with("Simplify and write the result"), "{mmlu}");
        assert!(
            mmlu.ends_with("The answer is (C).\n\nWhat is 1+1?"),
            "{mmlu}"
        );
        assert_eq!(mmlu.matches("Answer Choices:").count(), 5);
        // No control characters left from the reference's Python escapes.
        assert!(!mmlu.contains('\u{c}') && !mmlu.contains('\r'));
        assert!(user_message(&item("cn_middle_school", "A")).contains("答案是 C\n\nWhat is 1+1?"));
        assert_eq!(
            user_message(&item("cn_middle_school", "-2")),
            "What is 1+1?"
        );
        assert_eq!(user_message(&item("gsm8k", "2")), "What is 1+1?");
    }

    #[test]
    fn prompts_use_the_chat_template_with_the_format_system_prompt() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/qwen2.5-tokenizer");
        let tokenizer = Tokenizer::from_dir(dir).unwrap();
        let cot = render_prompt(&tokenizer, PromptFormat::Cot, &item("gsm8k", "2")).unwrap();
        assert_eq!(
            cot,
            "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n\
             <|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n"
        );
        let tir = render_prompt(&tokenizer, PromptFormat::Tir, &item("gsm8k", "2")).unwrap();
        assert!(
            tir.starts_with("<|im_start|>system\nPlease integrate natural language reasoning"),
            "{tir}"
        );
    }
}
