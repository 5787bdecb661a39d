//! Answer extraction from a response and gold parsing, with each data set's rule, as the
//! Qwen2.5-Math evaluation does them (`extract_answer`, `parse_ground_truth`), plus the strict
//! profile's box finder (`\boxed`/`\fbox` as commands, balanced braces, no prose "boxed").

use super::budget::MAX_ANSWER_BYTES;
use super::normalize::{strip_string, NormalizeOptions};

/// Data sets whose answers are multiple-choice letters.
pub fn is_choice_set(dataset: &str) -> bool {
    matches!(dataset, "mmlu_stem" | "sat_math" | "aqua" | "gaokao2023") || dataset.contains("mmlu")
}

/// Data sets the reference does not strip of unit words.
pub fn skips_units(dataset: &str) -> bool {
    matches!(dataset, "carp_en" | "minerva_math")
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `re.findall(r"\b(A|B|C|D|E)\b", s.upper())`.
pub fn choice_letters(s: &str) -> Vec<char> {
    let up: Vec<char> = s.to_uppercase().chars().collect();
    let mut out = Vec::new();
    for (k, &c) in up.iter().enumerate() {
        if ('A'..='E').contains(&c)
            && (k == 0 || !is_word(up[k - 1]))
            && (k + 1 == up.len() || !is_word(up[k + 1]))
        {
            out.push(c);
        }
    }
    out
}

fn trim_choice(s: &str) -> &str {
    s.trim_matches('\n')
        .trim_end_matches('.')
        .trim_end_matches('/')
        .trim_matches(' ')
        .trim_start_matches(':')
}

/// The grader's `choice_answer_clean`: the last standalone A–E letter, else the trimmed text.
pub fn choice_answer_clean(pred: &str) -> String {
    let p = trim_choice(pred);
    let picked = match choice_letters(p).last() {
        Some(&c) => c.to_string(),
        None => p.trim().trim_matches('.').to_string(),
    };
    picked
        .trim_end_matches('.')
        .trim_end_matches('/')
        .to_string()
}

/// The parser's `choice_answer_clean` (used as the extraction rule of multiple-choice sets):
/// the text after the last "answer is"/"choice is", first letter there, else the last letter.
fn choice_extract(response: &str) -> String {
    let mut pred = response.trim_matches('\n');
    let icl = ["choice is", "answer is"]
        .iter()
        .any(|t| pred.matches(t).count() > 1);
    if icl {
        pred = pred.split("\n\n").next().unwrap_or("");
    }
    let (pred, after_trigger) = match last_trigger_split(pred) {
        Some(rest) => (rest, true),
        None => (pred, false),
    };
    let p = trim_choice(pred);
    let letters = choice_letters(p);
    let picked = if letters.is_empty() {
        p.trim().trim_matches('.').to_string()
    } else if after_trigger {
        letters[0].to_string()
    } else {
        letters[letters.len() - 1].to_string()
    };
    picked
        .trim_end_matches('.')
        .trim_end_matches('/')
        .to_string()
}

/// The text after the last "choice is" or "answer is", if either occurs.
fn last_trigger_split(s: &str) -> Option<&str> {
    let a = s.rfind("choice is").map(|p| p + "choice is".len());
    let b = s.rfind("answer is").map(|p| p + "answer is".len());
    a.max(b).map(|p| &s[p..])
}

/// The reference's box reading: text after the last "boxed" (anywhere), its balanced `{...}`
/// (to the end when unterminated) or, without a brace, up to the next `$`.
fn reference_box(response: &str) -> String {
    let ans = response.rsplit("boxed").next().unwrap_or("");
    read_box_argument(ans).0
}

/// Reads `{...}` (balanced; to the end if unterminated) or a bare argument up to `$`.
/// Returns the content and whether it was terminated.
fn read_box_argument(ans: &str) -> (String, bool) {
    if let Some(body) = ans.strip_prefix('{') {
        let mut depth = 1usize;
        for (k, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return (body[..k].to_string(), true);
                    }
                }
                _ => {}
            }
        }
        (body.to_string(), false)
    } else {
        (ans.split('$').next().unwrap_or("").trim().to_string(), true)
    }
}

/// The strict box finder: the last `\boxed` or `\fbox` command; `None` when unterminated.
fn strict_box(response: &str) -> Option<Option<String>> {
    let mut best: Option<(usize, usize)> = None;
    for cmd in ["\\boxed", "\\fbox"] {
        let mut from = 0;
        while let Some(p) = response[from..].find(cmd) {
            let at = from + p;
            let end = at + cmd.len();
            let next_is_letter = response[end..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic());
            if !next_is_letter && best.is_none_or(|(b, _)| at > b) {
                best = Some((at, end));
            }
            from = end;
        }
    }
    let (_, end) = best?;
    let rest = response[end..].trim_start();
    let (content, terminated) = read_box_argument(rest);
    Some(terminated.then_some(content))
}

/// The last number of the text with commas deleted (`-?\d*\.?\d+`).
fn last_number(s: &str) -> String {
    let c: Vec<char> = s.chars().filter(|&c| c != ',').collect();
    let mut last = String::new();
    let mut i = 0;
    while i < c.len() {
        // Try a match at i: optional '-', digits, optional '.', then at least one digit.
        let start = i;
        let mut j = i;
        if c[j] == '-' {
            j += 1;
        }
        let d0 = j;
        while j < c.len() && c[j].is_ascii_digit() {
            j += 1;
        }
        let mut end = None;
        if j < c.len() && c[j] == '.' && j + 1 < c.len() && c[j + 1].is_ascii_digit() {
            let mut k = j + 1;
            while k < c.len() && c[k].is_ascii_digit() {
                k += 1;
            }
            end = Some(k);
        } else if j > d0 {
            end = Some(j);
        }
        match end {
            Some(e) => {
                last = c[start..e].iter().collect();
                i = e;
            }
            None => i += 1,
        }
    }
    last
}

/// Which extraction to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractMode {
    /// The reference's rules, quirks included.
    Reference,
    /// Box commands only as commands, `\fbox` accepted, unterminated boxes rejected.
    Strict,
}

/// The raw (unnormalised) answer of a response, or `None` when there is none.
pub fn extract_raw(response: &str, dataset: &str, mode: ExtractMode) -> Option<String> {
    let response = response.replace("\u{043a}\u{0438}", "");
    if is_choice_set(dataset) && matches!(dataset, "mmlu_stem" | "sat_math" | "aqua" | "gaokao2023")
    {
        return Some(choice_extract(&response));
    }
    let mut pred = if let (Some(a), true) = (
        response.split_once("final answer is $"),
        response.contains("$. I hope"),
    ) {
        a.1.split_once("$. I hope")
            .map_or(a.1, |b| b.0)
            .trim()
            .to_string()
    } else if mode == ExtractMode::Strict && strict_box(&response).is_some() {
        strict_box(&response).flatten()?
    } else if mode == ExtractMode::Reference && response.contains("boxed") {
        let ans = response.rsplit("boxed").next().unwrap_or("");
        if ans.is_empty() {
            return Some(String::new());
        }
        reference_box(&response)
    } else if let Some(p) = response.rfind("he answer is") {
        response[p + "he answer is".len()..].trim().to_string()
    } else if let Some(p) = response.rfind("final answer is") {
        response[p + "final answer is".len()..].trim().to_string()
    } else if let Some((_, after)) = response.split_once("答案是") {
        after
            .trim()
            .split("\n\n")
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    } else {
        last_number(&response)
    };
    if is_choice_set(dataset) {
        let letters = choice_letters(&pred);
        pred = match letters.last() {
            Some(&c) => c.to_string(),
            None => pred.trim().trim_matches('.').to_string(),
        };
    }
    // `re.sub(r"\n\s*", "", pred)`
    let mut joined = String::with_capacity(pred.len());
    let mut chars = pred.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            joined.push(c);
        }
    }
    let mut p = joined.as_str();
    p = p.strip_prefix(':').unwrap_or(p);
    p = p.strip_suffix('.').unwrap_or(p);
    p = p.strip_suffix('/').unwrap_or(p);
    Some(p.to_string())
}

/// Options of the normaliser for a data set and profile.
pub fn normalize_options(dataset: &str, strict: bool) -> NormalizeOptions {
    NormalizeOptions {
        skip_unit: skips_units(dataset),
        strict,
    }
}

/// Extracts and normalises a response's answer as the evaluation pipeline does (extraction,
/// `strip_string` inside it, then once more in `run_execute`).
pub fn extract_normalized(response: &str, dataset: &str, mode: ExtractMode) -> Option<String> {
    let strict = mode == ExtractMode::Strict;
    let opts = normalize_options(dataset, strict);
    let raw = extract_raw(response, dataset, mode)?;
    if raw.len() > MAX_ANSWER_BYTES {
        // Normalisation is linear per unit word; bound it by refusing huge answers upstream.
        return Some(raw);
    }
    let once = if is_choice_set(dataset)
        && matches!(dataset, "mmlu_stem" | "sat_math" | "aqua" | "gaokao2023")
    {
        raw
    } else {
        strip_string(&raw, opts)
    };
    Some(strip_string(&once, opts))
}

/// The gold answer as the reference's `parse_ground_truth` yields it, from the data set's stored
/// answer field (MATH/Minerva: the raw boxed text or a full solution; GSM8K: the answer after
/// `####` or the whole field; MMLU: a letter or a 0-3 index).
pub fn parse_gold_with(gold: &str, dataset: &str, strict: bool) -> String {
    let mode = if strict {
        ExtractMode::Strict
    } else {
        ExtractMode::Reference
    };
    let opts = normalize_options(dataset, strict);
    let raw = match dataset {
        "math" | "minerva_math" => {
            let solution = if gold.contains("boxed") {
                gold.to_string()
            } else {
                format!("\\boxed{{{gold}}}")
            };
            let inner = extract_raw(&solution, dataset, mode).unwrap_or_default();
            strip_bounded(&inner, opts)
        }
        "gsm8k" => gold.rsplit("####").next().unwrap_or(gold).to_string(),
        "mmlu_stem" => match gold.trim() {
            "0" => "A".into(),
            "1" => "B".into(),
            "2" => "C".into(),
            "3" => "D".into(),
            g => g.to_string(),
        },
        "olympiadbench" => gold.trim_matches('$').to_string(),
        "gaokao2023en" | "college_math" | "gaokao_math_cloze" => {
            gold.replace('$', "").trim().to_string()
        }
        _ => gold.to_string(),
    };
    if raw.len() > MAX_ANSWER_BYTES {
        // Compared as a string only (see `Checker::compare`): normalising it would cost time
        // linear in its length per unit word for nothing.
        raw
    } else if skips_units(dataset) {
        raw.replace("\\neq", "\\ne")
            .replace("\\leq", "\\le")
            .replace("\\geq", "\\ge")
    } else {
        strip_string(&raw, opts)
    }
}

/// `strip_string`, except on answers too long to be parsed, which are left as they are.
fn strip_bounded(raw: &str, opts: NormalizeOptions) -> String {
    if raw.len() > MAX_ANSWER_BYTES {
        raw.to_string()
    } else {
        strip_string(raw, opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_box_wins_and_nested_braces_balance() {
        let r = "First \\boxed{1}, then \\boxed{\\frac{1}{2}}.";
        assert_eq!(
            extract_raw(r, "math", ExtractMode::Reference).as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(
            extract_raw("so \\boxed 5$.", "math", ExtractMode::Reference).as_deref(),
            Some("5")
        );
    }

    #[test]
    fn strict_accepts_fbox_and_rejects_unterminated() {
        assert_eq!(
            extract_raw("\\fbox{7}", "math", ExtractMode::Strict).as_deref(),
            Some("7")
        );
        assert_eq!(extract_raw("\\boxed{7", "math", ExtractMode::Strict), None);
        assert_eq!(
            extract_raw("\\boxed{7", "math", ExtractMode::Reference).as_deref(),
            Some("7")
        );
    }

    #[test]
    fn fallbacks() {
        assert_eq!(
            extract_raw("So the answer is 12.", "gsm8k", ExtractMode::Reference).as_deref(),
            Some("12")
        );
        assert_eq!(
            extract_raw(
                "we get 3 and then 4,000 apples",
                "gsm8k",
                ExtractMode::Reference
            )
            .as_deref(),
            Some("4000")
        );
        assert_eq!(
            extract_raw(
                "I think it is C or maybe D.",
                "mmlu_stem",
                ExtractMode::Reference
            )
            .as_deref(),
            Some("D")
        );
        assert_eq!(
            extract_raw(
                "The answer is (C). Not D",
                "mmlu_stem",
                ExtractMode::Reference
            )
            .as_deref(),
            Some("C")
        );
    }
}
