//! Tool-integrated reasoning (TIR): the executor trait and the text protocol of the reference
//! evaluation (Qwen2.5-Math `evaluation/math_eval.py`, `evaluation/trajectory.py`).
//!
//! The reference protocol: generation stops at the stop word "```output"; if the text generated
//! since the last tool output, right-trimmed, ends with "```" (the closing of a python block) and
//! contains no "boxed", the program is extracted from the trajectory and executed, and
//! "\n```output\n{result}\n```\n" is appended after the right-trimmed text; then generation
//! resumes, at most 4 times per completion.
//!
//! Here generation works on tokens, not on re-tokenised text: the sampled tokens that spell
//! "```output" stay in the completion, and only the rest of the output block is appended as tool
//! tokens (`"\n{result}\n```\n"`), so the text is the reference's whenever the model wrote one
//! newline between "```" and "```output" (the usual case). The reference also appends "Reach max
//! function call limit." after its last call and stops; here a request beyond `max_tool_calls`
//! ends the completion with `FinishReason::ToolCallLimit` and appends nothing.

/// The stop word that asks for a tool call.
pub const TOOL_CALL_TRIGGER: &str = "```output";

/// Runs a program for a completion and returns its output: what the reference puts between
/// "```output\n" and "\n```" (the program's stdout, or its error report when stdout is empty).
///
/// Implementations sandbox the program (`mathrl_sandbox::SandboxExecutor` does) and must not panic; the
/// engine calls `execute` on its own thread, so a slow program delays only its own completion.
pub trait ToolExecutor: Send + Sync {
    /// Executes `code` and returns the text of its output block.
    fn execute(&self, code: &str) -> String;
}

/// Whether the text generated since the last tool output, cut before the trigger, asks for a
/// tool call: it ends with the closing "```" of a code block and has given no boxed answer.
pub fn asks_for_tool_call(segment_before_trigger: &str) -> bool {
    let segment = segment_before_trigger.trim_end();
    segment.ends_with("```") && !segment.contains("boxed")
}

/// The tool tokens' text: the rest of the reference's output block
/// `"\n```output\n{output}\n```\n"` after the `"```output"` the model wrote. `tail` is the text
/// the model wrote after the trigger (usually empty; a newline when one token spelled both).
pub fn output_block_rest(tail: &str, output: &str) -> String {
    let rest = format!("\n{output}\n```\n");
    match rest.strip_prefix(tail) {
        Some(stripped) => stripped.to_string(),
        None => rest,
    }
}

/// Byte ranges of the tool output inside `text` (an assistant turn of a TIR trajectory): what
/// follows each "```output" through the closing "```" and the newline after it, i.e. the part the
/// engine appends as tool tokens (the model writes "```output" itself). An output block left open
/// (a trajectory cut at its length limit) runs to the end of the text.
pub fn tool_output_spans(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(TOOL_CALL_TRIGGER) {
        let start = from + at + TOOL_CALL_TRIGGER.len();
        let end = match text[start..].find("\n```") {
            Some(close) => {
                let end = start + close + "\n```".len();
                end + usize::from(text[end..].starts_with('\n'))
            }
            None => text.len(),
        };
        spans.push(start..end);
        from = end;
    }
    spans
}

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

/// The program the reference runs when the text is not a well-formed trajectory.
pub const INVALID_TRAJECTORY_PROGRAM: &str = "raise ValueError('Invalid trajectory')";

/// Python's `str.strip()`: Rust's `trim` plus the four ASCII separators (U+001C..U+001F) that
/// Python also counts as whitespace.
pub fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Whether an earlier output counts as a successful execution (the reference's
/// `is_execution_success`): it holds none of the failure words.
pub fn is_execution_success(output: &str) -> bool {
    let lower = output.to_lowercase();
    FAILURE_WORDS.iter().all(|word| !lower.contains(word))
}

/// The program to execute for `text` (the prompt and completion so far, cut before its last
/// "```output"), as the reference's `extract_program(text)` builds it: every program whose output
/// looks successful, in order, with the `print(` lines of all but the last removed, and the
/// import lines of failed programs prepended, so that a stateless executor sees the definitions
/// of earlier blocks.
///
/// A text without any program gives the empty program (the reference runs it, and its output
/// says so); a text that is not a well-formed trajectory (a nested "```python", an empty block)
/// gives [`INVALID_TRAJECTORY_PROGRAM`].
pub fn extract_program(text: &str) -> String {
    let Some(parts) = text_to_trajectory(text) else {
        return INVALID_TRAJECTORY_PROGRAM.to_string();
    };
    let mut programs: Vec<String> = Vec::new();
    let mut import_lines: Vec<&str> = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        if part.role != Role::Program {
            continue;
        }
        // The parser always follows a program by an output part, unless the program is last.
        match parts.get(index + 1) {
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
    programs.join("\n")
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

/// The reference's `text_to_trajectory`: a line-by-line state machine over the exact fence lines
/// "```python", "```" and "```output…". `None` where the reference's assertions fail (it then
/// runs the "Invalid trajectory" program).
fn text_to_trajectory(text: &str) -> Option<Vec<Part>> {
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

    #[test]
    fn a_single_block_is_the_program() {
        let text = "Let me compute.\n```python\nx = 2 + 3\nprint(x)\n```";
        assert_eq!(extract_program(text), "x = 2 + 3\nprint(x)\n");
    }

    #[test]
    fn earlier_successful_blocks_are_kept_without_their_prints() {
        let text = "a\n```python\nx = 2\nprint(x)\n```\n```output\n2\n```\nb\n```python\nprint(x + 1)\n```";
        assert_eq!(extract_program(text), "x = 2\n\nprint(x + 1)\n");
    }

    #[test]
    fn failed_blocks_contribute_their_imports_only() {
        let text = "```python\nimport math\nfrom sympy import symbols\nboom()\n```\n```output\nNameError: boom\n```\n\
                    retry\n```python\nprint(math.pi)\n```";
        assert_eq!(
            extract_program(text),
            "import math\nfrom sympy import symbols\nprint(math.pi)\n"
        );
    }

    #[test]
    fn a_malformed_trajectory_gives_the_reference_error_program() {
        assert_eq!(
            extract_program("```python\n```python\n```"),
            INVALID_TRAJECTORY_PROGRAM
        );
        assert_eq!(
            extract_program("```python\n```"),
            INVALID_TRAJECTORY_PROGRAM
        );
        assert_eq!(extract_program("no code at all"), "");
        assert_eq!(extract_program("no code here\n```\nplain fence\n```"), "");
    }

    // Expected programs of the next tests were produced by running the reference's
    // `extract_program` on the same texts (QwenLM/Qwen2.5-Math evaluation/trajectory.py).
    #[test]
    fn earlier_programs_lose_indented_prints_and_failed_ones_give_their_imports() {
        let text = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nFirst.\n```python\n\
                    import math\nfrom sympy import Rational\ny = math.sqrt(2)\nprint(y)\n```\n\
                    ```output\nNameError: name 'q' is not defined\n```\nFix it.\n```python\n\
                    import sympy\nz = 5\n    print(z)\nprint(z*2)\n```\n```output\n10\n```\n\
                    Now:\n```python\nprint(z + 1)\n```";
        assert_eq!(
            extract_program(text),
            "import math\nfrom sympy import Rational\nimport sympy\nz = 5\n\nprint(z + 1)\n"
        );
    }

    #[test]
    fn nan_and_ellipsis_outputs_count_as_failures() {
        let text = "a\n```python\nprint('nan')\n```\n```output\nnan\n```\n```python\nprint(2)\n```";
        assert_eq!(extract_program(text), "print(2)\n");
        assert!(!is_execution_success("aaa...bbb"));
        assert!(!is_execution_success("ZeroDivisionError: division by zero"));
        assert!(is_execution_success("42"));
    }

    #[test]
    fn python_strip_matches_python_whitespace() {
        assert_eq!(python_strip("\u{1c}\u{a0} x \t\u{1f}"), "x");
        // A print line that starts with U+001C is a print line for Python's strip.
        let text =
            "```python\nx = 1\n\u{1c}print(x)\n```\n```output\n1\n```\n```python\nprint(x)\n```";
        assert_eq!(extract_program(text), "x = 1\n\nprint(x)\n");
    }

    #[test]
    fn tool_output_spans_are_what_the_engine_appends() {
        let text = "a\n```python\nprint(5)\n```\n```output\n5\n```\nb ```output\nx";
        let spans: Vec<&str> = tool_output_spans(text)
            .into_iter()
            .map(|r| &text[r])
            .collect();
        assert_eq!(spans, [output_block_rest("", "5"), "\nx".to_string()]);
        assert!(tool_output_spans("no tool here").is_empty());
    }

    #[test]
    fn tool_calls_need_a_closed_block_and_no_boxed_answer() {
        assert!(asks_for_tool_call("```python\nprint(1)\n```\n"));
        assert!(!asks_for_tool_call("```python\nprint(1)\n"));
        assert!(!asks_for_tool_call(
            "so \\boxed{1}\n```python\nprint(1)\n```"
        ));
    }

    #[test]
    fn the_output_block_completes_the_reference_format() {
        assert_eq!(output_block_rest("", "5"), "\n5\n```\n");
        assert_eq!(output_block_rest("\n", "5"), "5\n```\n");
        assert_eq!(output_block_rest("zz", "5"), "\n5\n```\n");
        let model_text = "```python\nprint(2+3)\n```\n```output";
        let full = format!("{model_text}{}", output_block_rest("", "5"));
        // The reference: rstripped output + f"\n```output\n{result}\n```\n".
        assert_eq!(
            full,
            format!(
                "{}\n```output\n{}\n```\n",
                "```python\nprint(2+3)\n```", "5"
            )
        );
    }
}
