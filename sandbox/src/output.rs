//! What the model sees of one execution, as the Qwen2.5-Math executor reduces it
//! (`evaluation/python_executor.py` of QwenLM/Qwen2.5-Math): the result or the report, stripped
//! and truncated to a few hundred characters. Which program runs is the core's business
//! (`mathrl::generation::tool::extract_program`); this is the executor's half of the protocol.

use mathrl::generation::tool::python_strip;

/// Characters of an output the model sees; longer ones keep the first and last half around "...".
pub const OUTPUT_TRUNCATION_CHARS: usize = 400;

/// The text the reference shows when a program ran out of time.
pub const TIMEOUT_MESSAGE: &str = "Timeout Error";

/// The reference's report of a program that succeeded without printing anything.
pub const DONE_MESSAGE: &str = "Done";

/// The reference's `truncate`: a text longer than `max_chars` characters (code points, as
/// Python's `len`) becomes its first `max_chars / 2` characters, "...", and its last `max_chars / 2`.
pub fn truncate_output(text: &str, max_chars: usize) -> String {
    let length = text.chars().count();
    if length <= max_chars {
        return text.to_string();
    }
    let half = max_chars / 2;
    let head: String = text.chars().take(half).collect();
    let tail: String = text.chars().skip(length - half).collect();
    format!("{head}...{tail}")
}

/// What the model sees of one execution: the reference strips and truncates the program's
/// result and its report separately, then shows the result, or the report when the result is
/// empty (`exec_result = res if res else report`).
pub fn visible_output(result: &str, report: &str, max_chars: usize) -> String {
    let result = truncate_output(python_strip(result), max_chars);
    if result.is_empty() {
        truncate_output(python_strip(report), max_chars)
    } else {
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_first_and_last_halves_in_characters() {
        let short = "x".repeat(400);
        assert_eq!(truncate_output(&short, 400), short);
        let long = format!("{}{}", "a".repeat(300), "é".repeat(300));
        let truncated = truncate_output(&long, 400);
        assert_eq!(
            truncated,
            format!("{}...{}", "a".repeat(200), "é".repeat(200))
        );
        assert_eq!(truncated.chars().count(), 403);
    }

    #[test]
    fn visible_output_prefers_the_result_and_falls_back_to_the_report() {
        assert_eq!(visible_output("  2\n", "Done", 400), "2");
        assert_eq!(visible_output("\n", "Done", 400), "Done");
        assert_eq!(
            visible_output("", " ValueError: x \n", 400),
            "ValueError: x"
        );
    }
}
