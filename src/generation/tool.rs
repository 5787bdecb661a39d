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
/// Implementations sandbox the program (the one in `mathrl-actors` does) and must not panic; the
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

/// One part of a tool-integrated trajectory.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Rationale(String),
    Program(String),
    Output(String),
}

/// The reference's `text_to_trajectory`: splits text into rationale, program and output parts
/// by the lines "```python", "```", "```output…"; `None` where the reference's asserts fail.
fn text_to_trajectory(text: &str) -> Option<Vec<Part>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Role {
        Rationale,
        Program,
        Output,
    }
    let close = |role: Role, content: String| match role {
        Role::Rationale => Part::Rationale(content),
        Role::Program => Part::Program(content),
        Role::Output => Part::Output(content),
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let mut parts = Vec::new();
    let mut role = Role::Rationale;
    let mut content = String::new();
    for (i, line) in lines.iter().enumerate() {
        if *line == "```python" {
            if role != Role::Rationale {
                return None;
            }
            if !content.is_empty() {
                parts.push(Part::Rationale(std::mem::take(&mut content)));
            }
            role = Role::Program;
        } else if role == Role::Program && *line == "```" {
            if content.is_empty() {
                return None;
            }
            parts.push(Part::Program(std::mem::take(&mut content)));
            role = Role::Output;
        } else if role == Role::Output && line.starts_with("```output") {
            if !content.is_empty() {
                return None;
            }
        } else if role == Role::Output && *line == "```" {
            parts.push(Part::Output(std::mem::take(&mut content)));
            role = Role::Rationale;
        } else {
            content.push_str(line);
            if i + 1 < lines.len() {
                content.push('\n');
            }
        }
    }
    if !content.is_empty() {
        parts.push(close(role, content));
    }
    Some(parts)
}

/// The reference's `is_execution_success`: an output free of error words.
fn is_execution_success(output: &str) -> bool {
    const ERROR_WORDS: [&str; 6] = [
        "error",
        "exception",
        "no algorithms",
        "cannot",
        "nan",
        "...",
    ];
    let lower = output.to_lowercase();
    ERROR_WORDS.iter().all(|w| !lower.contains(w))
}

/// The program to execute for `text` (a completion cut before its last "```output"), as the
/// reference's `extract_program(text)` builds it: every program whose output shows no error, in
/// order, with the `print(` lines of all but the last removed, and the import lines of failed
/// programs prepended, so that a stateless executor sees the definitions of earlier blocks.
pub fn extract_program(text: &str) -> String {
    const INVALID: &str = "raise ValueError('Invalid trajectory')";
    let Some(parts) = text_to_trajectory(text) else {
        return INVALID.to_string();
    };
    let mut programs: Vec<String> = Vec::new();
    let mut imports: Vec<&str> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let Part::Program(program) = part else {
            continue;
        };
        match parts.get(i + 1) {
            None => programs.push(program.clone()),
            Some(Part::Output(output)) if is_execution_success(output.trim()) => {
                programs.push(program.clone())
            }
            Some(Part::Output(_)) => imports.extend(
                program
                    .split('\n')
                    .filter(|l| l.starts_with("import") || l.starts_with("from")),
            ),
            Some(_) => return INVALID.to_string(),
        }
    }
    if programs.is_empty() {
        programs.push(String::new());
    }
    if !imports.is_empty() {
        programs[0] = format!("{}\n{}", imports.join("\n"), programs[0]);
    }
    let last = programs.len() - 1;
    for program in &mut programs[..last] {
        *program = program
            .split('\n')
            .filter(|l| !l.trim().starts_with("print("))
            .collect::<Vec<_>>()
            .join("\n");
    }
    programs.join("\n")
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
            "raise ValueError('Invalid trajectory')"
        );
        assert_eq!(
            extract_program("```python\n```"),
            "raise ValueError('Invalid trajectory')"
        );
        assert_eq!(extract_program("no code at all"), "");
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
