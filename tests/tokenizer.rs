//! The tokenizer and chat template against the reference renderings of
//! `tests/fixtures/qwen2.5-tokenizer/expected.json` (transformers' `apply_chat_template`).

mod common;

use common::{fixture, fixture_json};
use mathrl::{ChatMessage, Tokenizer};

fn qwen() -> Tokenizer {
    Tokenizer::from_dir(fixture("qwen2.5-tokenizer")).expect("tokenizer loads")
}

#[test]
fn chat_template_renders_exactly_like_transformers() {
    let tok = qwen();
    let expected = fixture_json("qwen2.5-tokenizer", "expected.json");
    for case in expected["cases"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let add = case["add_generation_prompt"].as_bool().unwrap();
        let text = tok.apply_chat_template(&messages, add).unwrap();
        assert_eq!(text, case["text"].as_str().unwrap());
        let ids: Vec<u32> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode(&text).unwrap(), ids, "ids of {text:?}");
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            case["decoded"].as_str().unwrap()
        );
    }
}

#[test]
fn one_question_prompt_is_the_chatml_string() {
    let tok = qwen();
    let prompt = tok.question_prompt("What is 2+3?", None).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n\
         <|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn special_tokens_are_single_ids_and_text_round_trips() {
    let tok = qwen();
    assert_eq!(tok.eos_token_id(), Some(151645));
    assert_eq!(tok.pad_token_id(), Some(151643));
    for (token, id) in [
        ("<|im_start|>", 151644),
        ("<|im_end|>", 151645),
        ("<|endoftext|>", 151643),
    ] {
        assert_eq!(tok.encode(token).unwrap(), vec![id]);
    }
    for text in [
        "Let $x = \\frac{1}{2}$. Then 2x = 1, so \\boxed{1}.",
        "求 $\\sqrt{2}$ 的值。",
        "  spaces\n\nand\ttabs ",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
}

#[test]
fn missing_tokenizer_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}
