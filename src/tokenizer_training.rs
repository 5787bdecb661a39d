//! Training a small byte-level BPE tokenizer in the Qwen2.5 layout: Qwen's normaliser (NFC), its
//! pre-tokenizer (the split regex, which isolates every digit, then ByteLevel) and decoder, the
//! ChatML special tokens under their Qwen strings, and Qwen2.5-Math's chat template, so that prompts
//! look exactly like Qwen2.5-Math prompts and a small model trained with it loads in transformers.
//!
//! Special-token ids (fixed, whatever the vocabulary size): `<|endoftext|>` = 0 (padding),
//! `<|im_start|>` = 1, `<|im_end|>` = 2 (end of sequence); ids 3..=258 are the 256 byte
//! characters, the merges follow.

use std::path::Path;

use serde_json::{json, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::{Error, Result, Tokenizer};

/// The padding token, id 0.
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// Opens a ChatML turn, id 1.
pub const IM_START: &str = "<|im_start|>";
/// Closes a ChatML turn and ends generation, id 2.
pub const IM_END: &str = "<|im_end|>";
/// The special tokens in id order.
pub const SPECIAL_TOKENS: [&str; 3] = [ENDOFTEXT, IM_START, IM_END];

/// Qwen2.5-Math's chain-of-thought system prompt, the chat template's default.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";

/// Qwen2's pre-tokenizer regex: words with one leading non-letter, single digits, punctuation
/// runs, newlines and spaces.
pub const QWEN2_SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The ChatML template of Qwen2.5-Math's tokenizer_config.json, character for character.
pub const QWEN25_MATH_CHAT_TEMPLATE: &str = r#"{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{%- else %}{{- '<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n' }}{%- endif %}{%- for message in messages %}{%- if not (loop.first and message['role'] == 'system') %}{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"#;

/// Smallest vocabulary: the special tokens and the 256 byte characters.
pub const MIN_VOCAB_SIZE: usize = SPECIAL_TOKENS.len() + 256;

/// A question and its solution as the model sees them in SFT: the chat template's rendering with
/// the default system prompt. Training the tokenizer on these texts gives the system prompt and
/// the role names their own merges.
pub fn chatml_conversation(question: &str, solution: &str) -> String {
    format!(
        "{IM_START}system\n{DEFAULT_SYSTEM_PROMPT}{IM_END}\n{IM_START}user\n{question}{IM_END}\n\
         {IM_START}assistant\n{solution}{IM_END}\n"
    )
}

/// Trains a byte-level BPE tokenizer of at most `vocab_size` ids (special tokens included) on
/// `texts`, writes `tokenizer.json` and `tokenizer_config.json` to `out_dir` (created if needed)
/// and loads them back. The vocabulary stops short of `vocab_size` when the corpus runs out of
/// pairs to merge (pre-tokens never merge across one another). Special-token strings inside the
/// texts are cut out before counting, so ChatML conversations can be fed as they are. The same
/// texts give a byte-identical tokenizer.json.
pub fn train_tokenizer(
    texts: impl Iterator<Item = String>,
    vocab_size: usize,
    out_dir: &Path,
) -> Result<Tokenizer> {
    if vocab_size < MIN_VOCAB_SIZE {
        return Err(Error::Tokenizer(format!(
            "vocab_size {vocab_size} is below {MIN_VOCAB_SIZE} (3 special tokens + 256 bytes)"
        )));
    }
    let pieces: Vec<String> = texts
        .flat_map(|text| split_out_special_tokens(&text))
        .collect();
    let mut tokenizer = empty_qwen2_style_tokenizer()?;
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(0)
        .show_progress(false)
        // Empty rather than absent, as Qwen2's tokenizer.json has them (the same merges either way).
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tokenizer
        .train(&mut trainer, pieces.into_iter())
        .map_err(|e| Error::Tokenizer(format!("BPE training failed: {e}")))?;

    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let json_path = out_dir.join("tokenizer.json");
    let json = tokenizer
        .to_string(true)
        .map_err(|e| Error::Tokenizer(format!("serialising tokenizer.json: {e}")))?;
    std::fs::write(&json_path, json + "\n").map_err(|e| Error::io(&json_path, e))?;
    let config_path = out_dir.join("tokenizer_config.json");
    let config =
        serde_json::to_string_pretty(&tokenizer_config()).expect("a JSON value always serialises");
    std::fs::write(&config_path, config + "\n").map_err(|e| Error::io(&config_path, e))?;
    Tokenizer::from_dir(out_dir)
}

/// Qwen2's tokenizer pipeline around an empty BPE model.
fn empty_qwen2_style_tokenizer() -> Result<tokenizers::Tokenizer> {
    let split = Split::new(
        SplitPattern::Regex(QWEN2_SPLIT_REGEX.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| Error::Tokenizer(format!("Qwen2 split regex: {e}")))?;
    // add_prefix_space, trim_offsets, use_regex: all off, as in Qwen2's tokenizer.json (the split
    // above does ByteLevel's regex work).
    let byte_level = ByteLevel::new(false, false, false);
    let mut tokenizer = tokenizers::Tokenizer::new(BPE::default());
    tokenizer
        .with_normalizer(Some(NFC))
        .map_err(|e| Error::Tokenizer(format!("NFC normaliser: {e}")))?
        .with_pre_tokenizer(Some(Sequence::new(vec![split.into(), byte_level.into()])))
        .with_post_processor(Some(byte_level))
        .with_decoder(Some(ByteLevelDecoder::new(false, false, false)));
    Ok(tokenizer)
}

/// The pieces of `text` between special-token strings.
fn split_out_special_tokens(text: &str) -> Vec<String> {
    let mut pieces = vec![text.to_string()];
    for special in SPECIAL_TOKENS {
        pieces = pieces
            .iter()
            .flat_map(|piece| piece.split(special))
            .filter(|piece| !piece.is_empty())
            .map(str::to_string)
            .collect();
    }
    pieces
}

/// tokenizer_config.json with the fields and values of Qwen2.5-Math's, the special tokens aside.
fn tokenizer_config() -> Value {
    let added_tokens_decoder: serde_json::Map<String, Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(id, content)| {
            let entry = json!({
                "content": content,
                "lstrip": false,
                "normalized": false,
                "rstrip": false,
                "single_word": false,
                "special": true,
            });
            (id.to_string(), entry)
        })
        .collect();
    json!({
        "add_bos_token": false,
        "add_prefix_space": false,
        "added_tokens_decoder": added_tokens_decoder,
        "additional_special_tokens": [IM_START, IM_END],
        "bos_token": null,
        "chat_template": QWEN25_MATH_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "eos_token": IM_END,
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": ENDOFTEXT,
        "split_special_tokens": false,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": null,
    })
}

#[cfg(test)]
mod tests;
