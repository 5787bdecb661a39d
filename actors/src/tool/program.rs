//! The text side of tool-integrated reasoning (TIR), as the Qwen2.5-Math evaluation does it
//! (`evaluation/trajectory.py`, `python_executor.py`, `math_eval.py` of QwenLM/Qwen2.5-Math):
//! which program runs when a completion closes a ```` ```python ```` block, how its result is
//! reduced to the short text the model sees, and the exact block appended to the completion.

/// Stop strings of a `tool-integrated` generation in the reference: the end-of-text markers, the
/// few-shot separator and the opening of an output block (generation pauses there, the program
/// runs, and its output block is appended by the runner).
pub const TIR_STOP_STRINGS: [&str; 5] = [
    "</s>",
    "<|im_end|>",
    "<|endoftext|>",
    "\n\n---",
    "```output",
];

/// Characters of an output the model sees; longer ones keep the first and last half around "...".
pub const OUTPUT_TRUNCATION_CHARS: usize = 400;

/// Appended after the last allowed tool call's output block, exactly as the reference does.
pub const MAX_CALLS_MESSAGE: &str = "\nReach max function call limit.";

/// The text the reference shows when a program ran out of time.
pub const TIMEOUT_MESSAGE: &str = "Timeout Error";

/// The reference's report of a program that succeeded without printing anything.
pub const DONE_MESSAGE: &str = "Done";

/// The program the reference runs when the text is not a well-formed trajectory.
pub const INVALID_TRAJECTORY_PROGRAM: &str = "raise ValueError('Invalid trajectory')";

/// Words whose presence (case-insensitive) marks an earlier output as failed; the reference then
/// keeps only that program's import lines. "..." catches truncated outputs, "nan" any NaN.
const FAILURE_WORDS: [&str; 6] = [
    "error",
    "exception",
    "no algorithms",
    "cannot",
    "nan",
    "...",
];

/// Python's `str.strip()`: Rust's `trim` plus the four ASCII separators (U+001C..U+001F) that
/// Python also counts as whitespace.
pub fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Python's `str.rstrip()` (see [`python_strip`]).
pub fn python_rstrip(text: &str) -> &str {
    text.trim_end_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

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

/// The exact text appended to the completion after a program ran (`math_eval.py`).
pub fn format_output_block(output: &str) -> String {
    format!("\n```output\n{output}\n```\n")
}

/// Whether an earlier output counts as a successful execution (`is_execution_success`).
pub fn is_execution_success(output: &str) -> bool {
    let lower = output.to_lowercase();
    FAILURE_WORDS.iter().all(|word| !lower.contains(word))
}

/// The program to run for a text (prompt and completion so far) that ends with a closed
/// ```` ```python ```` block, following the reference's `extract_program`: the programs whose
/// outputs look successful are concatenated with the last one (their `print(` lines removed, so
/// only the last program prints), and failed programs contribute only their import lines.
///
/// Returns `None` when the text holds no program block at all; the reference then runs the empty
/// program (so a caller that must match it runs `""`). A text that is not a well-formed
/// trajectory (a nested ```` ```python ````, an empty block) gives the reference's
/// `raise ValueError('Invalid trajectory')`.
pub fn extract_program(text: &str) -> Option<String> {
    let Some(trajectory) = parse_trajectory(text) else {
        return Some(INVALID_TRAJECTORY_PROGRAM.to_string());
    };
    if !trajectory.iter().any(|part| part.role == Role::Program) {
        return None;
    }
    let mut programs: Vec<String> = Vec::new();
    let mut import_lines: Vec<&str> = Vec::new();
    for (index, part) in trajectory.iter().enumerate() {
        if part.role != Role::Program {
            continue;
        }
        // The parser always follows a program by an output part, unless the program is last.
        match trajectory.get(index + 1) {
            Some(output) if !is_execution_success(python_strip(&output.content)) => {
                import_lines.extend(
                    part.content
                        .split('\n')
                        .filter(|line| line.starts_with("import") || line.starts_with("from")),
                );
            }
            _ => programs.push(part.content.clone()),
        }
    }
    if programs.is_empty() {
        programs.push(String::new());
    }
    if !import_lines.is_empty() {
        programs[0] = format!("{}\n{}", import_lines.join("\n"), programs[0]);
    }
    let last = programs.len() - 1;
    for program in &mut programs[..last] {
        *program = program
            .split('\n')
            .filter(|line| !python_strip(line).starts_with("print("))
            .collect::<Vec<_>>()
            .join("\n");
    }
    Some(programs.join("\n"))
}

/// The role of one part of a TIR trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Rationale,
    Program,
    Output,
}

/// One part of a trajectory: its role and its text, line ends included.
#[derive(Debug)]
struct Part {
    role: Role,
    content: String,
}

/// The reference's `text_to_trajectory`: a line-by-line state machine over exact fence lines.
/// `None` where the reference's assertions fail (it then runs the "Invalid trajectory" program).
fn parse_trajectory(text: &str) -> Option<Vec<Part>> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut parts = Vec::new();
    let mut role = Role::Rationale;
    let mut content = String::new();
    for (index, line) in lines.iter().enumerate() {
        if *line == "```python" {
            if role != Role::Rationale {
                return None;
            }
            if !content.is_empty() {
                parts.push(Part {
                    role,
                    content: std::mem::take(&mut content),
                });
            }
            role = Role::Program;
        } else if role == Role::Program && *line == "```" {
            if content.is_empty() {
                return None;
            }
            parts.push(Part {
                role,
                content: std::mem::take(&mut content),
            });
            role = Role::Output;
        } else if role == Role::Output && line.starts_with("```output") {
            if !content.is_empty() {
                return None;
            }
        } else if role == Role::Output && *line == "```" {
            parts.push(Part {
                role,
                content: std::mem::take(&mut content),
            });
            role = Role::Rationale;
        } else {
            content.push_str(line);
            if index + 1 < lines.len() {
                content.push('\n');
            }
        }
    }
    if !content.is_empty() {
        parts.push(Part { role, content });
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected programs were produced by running the reference's `extract_program` on the same
    // texts (QwenLM/Qwen2.5-Math evaluation/trajectory.py).
    #[test]
    fn single_program_is_returned_with_its_line_ends() {
        let text = "Let me compute.\n```python\nx = 2\nprint(x + 3)\n```";
        assert_eq!(
            extract_program(text).as_deref(),
            Some("x = 2\nprint(x + 3)\n")
        );
    }

    #[test]
    fn earlier_programs_are_kept_without_prints_and_failed_ones_give_their_imports() {
        let text = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nFirst.\n```python\n\
                    import math\nfrom sympy import Rational\ny = math.sqrt(2)\nprint(y)\n```\n\
                    ```output\nNameError: name 'q' is not defined\n```\nFix it.\n```python\n\
                    import sympy\nz = 5\n    print(z)\nprint(z*2)\n```\n```output\n10\n```\n\
                    Now:\n```python\nprint(z + 1)\n```";
        assert_eq!(
            extract_program(text).as_deref(),
            Some("import math\nfrom sympy import Rational\nimport sympy\nz = 5\n\nprint(z + 1)\n")
        );
    }

    #[test]
    fn nan_and_ellipsis_outputs_count_as_failures() {
        let text = "a\n```python\nprint('nan')\n```\n```output\nnan\n```\n```python\nprint(2)\n```";
        assert_eq!(extract_program(text).as_deref(), Some("print(2)\n"));
        assert!(!is_execution_success("aaa...bbb"));
        assert!(!is_execution_success("ZeroDivisionError: division by zero"));
        assert!(is_execution_success("42"));
    }

    #[test]
    fn no_program_gives_none_and_malformed_text_the_invalid_trajectory_program() {
        assert_eq!(extract_program("no code here\n```\nplain fence\n```"), None);
        let invalid = Some(INVALID_TRAJECTORY_PROGRAM.to_string());
        assert_eq!(extract_program("```python\nprint(1)\n```python\n"), invalid);
        assert_eq!(extract_program("```python\n```"), invalid);
    }

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

    #[test]
    fn python_strip_matches_python_whitespace() {
        assert_eq!(python_strip("\u{1c}\u{a0} x \t\u{1f}"), "x");
        assert_eq!(python_rstrip("```\n \n"), "```");
    }

    #[test]
    fn output_block_is_the_reference_text() {
        assert_eq!(format_output_block("2"), "\n```output\n2\n```\n");
    }
}
