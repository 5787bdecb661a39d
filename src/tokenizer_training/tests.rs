use std::path::PathBuf;

use super::*;
use crate::data::procedural::{Problem, ProceduralTask, Split, TaskConfig};
use crate::ChatMessage;

fn problems(n: usize) -> Vec<Problem> {
    let task = ProceduralTask::new(TaskConfig::default()).expect("the default config is valid");
    task.problems(Split::Train).take(n).collect()
}

fn corpus(problems: &[Problem]) -> impl Iterator<Item = String> + '_ {
    problems
        .iter()
        .map(|p| chatml_conversation(&p.question, &p.solution))
}

fn trained(n: usize, vocab_size: usize) -> (tempfile::TempDir, Tokenizer) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let tokenizer = train_tokenizer(corpus(&problems(n)), vocab_size, dir.path()).expect("trained");
    (dir, tokenizer)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_same_corpus_gives_a_byte_identical_tokenizer() {
    let (a, _) = trained(600, 700);
    let (b, _) = trained(600, 700);
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let read = |dir: &Path| std::fs::read(dir.join(file)).expect("written");
        assert!(
            read(a.path()) == read(b.path()),
            "{file} differs between two trainings"
        );
    }
}

#[test]
fn the_corpus_round_trips_and_digits_stay_single() {
    let problems = problems(400);
    let (_dir, tokenizer) = trained(400, 800);
    for text in corpus(&problems) {
        let ids = tokenizer.encode(&text).expect("encodes");
        assert_eq!(tokenizer.decode(&ids, false).expect("decodes"), text);
        for &id in &ids {
            let token = tokenizer.inner().id_to_token(id).expect("a known id");
            if token.chars().any(|c| c.is_ascii_digit()) {
                assert_eq!(
                    token.chars().count(),
                    1,
                    "token `{token}` holds a digit and more"
                );
            }
        }
    }
    let digit_ids: Vec<u32> = (0..10)
        .map(|d| {
            tokenizer
                .token_to_id(&d.to_string())
                .expect("every digit is a token")
        })
        .collect();
    assert_eq!(
        tokenizer.encode("9876543210").expect("encodes"),
        digit_ids.iter().rev().copied().collect::<Vec<_>>()
    );
}

#[test]
fn special_tokens_are_single_ids_with_the_documented_values() {
    let (_dir, tokenizer) = trained(200, 600);
    for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tokenizer.token_to_id(token), Some(id as u32));
        assert_eq!(tokenizer.encode(token).expect("encodes"), vec![id as u32]);
        assert_eq!(tokenizer.decode(&[id as u32], true).expect("decodes"), "");
    }
    assert_eq!(tokenizer.eos_token_id(), Some(2));
    assert_eq!(tokenizer.pad_token_id(), Some(0));
    let ids = tokenizer
        .encode("<|im_start|>user\n7<|im_end|>")
        .expect("encodes");
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
}

#[test]
fn prompts_render_exactly_like_qwen25_math_prompts() {
    let (_dir, ours) = trained(200, 600);
    let qwen =
        Tokenizer::from_dir(fixture("qwen2.5-tokenizer")).expect("the Qwen2.5 fixture loads");
    let p = &problems(1)[0];
    let expected = format!(
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n\
         <|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
        p.question
    );
    assert_eq!(
        ours.question_prompt(&p.question, None).expect("renders"),
        expected
    );
    let conversations = [
        vec![ChatMessage::new("user", p.question.clone())],
        vec![
            ChatMessage::new("system", "Answer briefly."),
            ChatMessage::new("user", "What is 2 + 3?"),
        ],
        vec![
            ChatMessage::new("user", p.question.clone()),
            ChatMessage::new("assistant", p.solution.clone()),
        ],
    ];
    for messages in &conversations {
        for generation_prompt in [true, false] {
            assert_eq!(
                ours.apply_chat_template(messages, generation_prompt)
                    .expect("renders"),
                qwen.apply_chat_template(messages, generation_prompt)
                    .expect("renders")
            );
        }
    }
    let sft = ours
        .apply_chat_template(&conversations[2], false)
        .expect("renders");
    assert_eq!(sft, chatml_conversation(&p.question, &p.solution));
}

#[test]
fn tokenizer_config_has_qwen25_maths_fields_and_values() {
    let (dir, _) = trained(100, 400);
    let mut ours = read_json(&dir.path().join("tokenizer_config.json"));
    let mut qwen = read_json(&fixture("qwen2.5-tokenizer/tokenizer_config.json"));
    assert_eq!(
        ours["chat_template"].as_str(),
        Some(QWEN25_MATH_CHAT_TEMPLATE)
    );
    for field in ["added_tokens_decoder", "additional_special_tokens"] {
        let (a, b) = (
            ours.as_object_mut().expect("an object"),
            qwen.as_object_mut().expect("an object"),
        );
        assert!(
            a.remove(field).is_some() && b.remove(field).is_some(),
            "{field}"
        );
    }
    assert_eq!(ours, qwen);
}

#[test]
fn the_pipeline_is_qwen2s() {
    let (dir, _) = trained(100, 400);
    let ours = read_json(&dir.path().join("tokenizer.json"));
    let qwen = read_json(&fixture("qwen2.5-tokenizer/tokenizer.json"));
    for field in ["normalizer", "pre_tokenizer", "post_processor", "decoder"] {
        assert_eq!(ours[field], qwen[field], "{field}");
    }
    for field in [
        "type",
        "dropout",
        "unk_token",
        "continuing_subword_prefix",
        "end_of_word_suffix",
        "fuse_unk",
        "byte_fallback",
        "ignore_merges",
    ] {
        assert_eq!(ours["model"][field], qwen["model"][field], "model.{field}");
    }
}

#[test]
fn the_vocabulary_size_is_a_ceiling() {
    let (_dir, small) = trained(100, MIN_VOCAB_SIZE + 40);
    assert_eq!(small.vocab_size(), MIN_VOCAB_SIZE + 40);
    let (_dir, capped) = trained(100, 50_000);
    assert!(
        capped.vocab_size() < 50_000,
        "the corpus runs out of merges first"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let message = train_tokenizer(std::iter::empty(), 100, dir.path())
        .expect_err("refused")
        .to_string();
    assert!(message.contains("vocab_size 100"), "{message}");
}

#[test]
fn special_token_strings_in_the_corpus_are_not_learnt() {
    let (_dir, tokenizer) = trained(200, 5000);
    let vocab = tokenizer.inner().get_vocab(true);
    assert!(
        vocab
            .keys()
            .all(|t| !t.contains("im_") || SPECIAL_TOKENS.contains(&t.as_str())),
        "a merge inside a special token"
    );
    assert_eq!(
        split_out_special_tokens("<|im_start|>a<|im_end|>\n"),
        vec!["a", "\n"]
    );
}

/// Ids that transformers' AutoTokenizer gave for prompts rendered with the fixture tokenizer
/// (tests/fixtures/procedural-tokenizer/README.md says how they were made).
#[test]
fn ids_match_transformers() {
    let dir = fixture("procedural-tokenizer");
    let tokenizer = Tokenizer::from_dir(&dir).expect("the fixture loads");
    let expected = read_json(&dir.join("expected.json"));
    let cases = expected["cases"].as_array().expect("a list of cases");
    assert!(cases.len() >= 5);
    assert_eq!(
        expected["vocab_size"].as_u64(),
        Some(tokenizer.vocab_size() as u64)
    );
    assert_eq!(
        expected["eos_token_id"].as_u64(),
        tokenizer.eos_token_id().map(u64::from)
    );
    assert_eq!(
        expected["pad_token_id"].as_u64(),
        tokenizer.pad_token_id().map(u64::from)
    );
    for case in cases {
        let messages: Vec<ChatMessage> =
            serde_json::from_value(case["messages"].clone()).expect("messages");
        let generation_prompt = case["add_generation_prompt"].as_bool().expect("a flag");
        let text = tokenizer
            .apply_chat_template(&messages, generation_prompt)
            .expect("renders");
        assert_eq!(text, case["text"].as_str().expect("the text"));
        let ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).expect("ids");
        assert_eq!(tokenizer.encode(&text).expect("encodes"), ids, "{text}");
        let decoded = case["decoded"].as_str().expect("the decoded text");
        assert_eq!(tokenizer.decode(&ids, false).expect("decodes"), decoded);
    }
}

/// The fixture is the tokenizer of the first 2000 default training problems at vocab_size 1024: a
/// retraining must give it back byte for byte (same generator, same trainer, any machine). When a
/// template changes on purpose, regenerate the fixture as its README says.
#[test]
fn retraining_reproduces_the_fixture() {
    let (dir, _) = trained(2000, 1024);
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let ours = std::fs::read_to_string(dir.path().join(file)).expect("written");
        let fixture = std::fs::read_to_string(fixture("procedural-tokenizer").join(file))
            .expect("the fixture");
        assert!(
            ours == fixture,
            "{file} differs from tests/fixtures/procedural-tokenizer/{file}"
        );
    }
}
