//! Answer normalisation: the reference's `strip_string`, step by step, and the strict profile's
//! variant of it (which skips the steps that change an answer's meaning).

use super::units::{strip_trailing_unit_word, strip_unit_words};
use super::words::convert_word_number;

/// Which normalisation to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormalizeOptions {
    /// Skip the unit-word list (the reference does for minerva_math).
    pub skip_unit: bool,
    /// Strict profile: no unit-word list, no deletion of "and", no `j` → `i`, `\mbox{..}` content
    /// kept.
    pub strict: bool,
}

/// Removes `\text{...}` running to the end of the string (the reference's `\\text{.*?}$`).
fn drop_trailing_text(s: &str) -> String {
    if let Some(p) = s.find("\\text{") {
        if s.ends_with('}') && s.len() >= p + 7 {
            return s[..p].trim().to_string();
        }
    }
    s.to_string()
}

/// Replaces each `open...}` (shortest) by its content (`keep`) or by nothing.
fn unwrap_command(s: &str, open: &str, keep: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find(open) {
        let after = &rest[p + open.len()..];
        match after.find('}') {
            Some(q) => {
                out.push_str(&rest[..p]);
                if keep {
                    out.push_str(&after[..q]);
                }
                rest = &after[q + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// `re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)`.
fn array_to_pmatrix(s: &str) -> String {
    let open = "\\begin{array}{";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find(open) {
        let after = &rest[p + open.len()..];
        match after.find('}') {
            Some(q) => {
                out.push_str(&rest[..p]);
                out.push_str("\\begin{pmatrix}");
                rest = &after[q + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out.replace("\\end{array}", "\\end{pmatrix}")
}

/// `(\d+)\.0*([^\d])` → `\1\2` then `(\d+)\.0*$` → `\1`: drops all-zero decimal parts.
fn drop_zero_decimals(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let n = c.len();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < n {
        if c[i].is_ascii_digit() && (i == 0 || !c[i - 1].is_ascii_digit()) {
            let mut j = i;
            while j < n && c[j].is_ascii_digit() {
                j += 1;
            }
            out.extend(&c[i..j]);
            if j < n && c[j] == '.' {
                let mut k = j + 1;
                while k < n && c[k] == '0' {
                    k += 1;
                }
                if k == n || !c[k].is_ascii_digit() {
                    // `\1\2` keeps the non-digit (or nothing at the end).
                    i = k;
                    if k < n {
                        out.push(c[k]);
                        i = k + 1;
                    }
                    continue;
                }
            }
            i = j;
            continue;
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

/// `re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s)`.
fn brace_sqrt_argument(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut rest = s;
    while let Some(p) = rest.find("\\sqrt") {
        out.push_str(&rest[..p + 5]);
        let after = &rest[p + 5..];
        let w: usize = after
            .char_indices()
            .find(|&(_, ch)| !(ch.is_alphanumeric() || ch == '_'))
            .map_or(after.len(), |(k, _)| k);
        if w > 0 {
            out.push('{');
            out.push_str(&after[..w]);
            out.push('}');
        }
        rest = &after[w..];
    }
    out.push_str(rest);
    out
}

/// The reference's `_fix_fracs`: `\frac12` → `\frac{1}{2}`, `\frac1{72}` → `\frac{1}{72}`.
pub fn fix_fracs(s: &str) -> String {
    let mut parts = s.split("\\frac");
    let mut out = parts.next().unwrap_or("").to_string();
    for sub in parts {
        out.push_str("\\frac");
        let ch: Vec<char> = sub.chars().collect();
        if ch.first() == Some(&'{') {
            out.push_str(sub);
            continue;
        }
        if ch.len() < 2 {
            return s.to_string();
        }
        let (a, b) = (ch[0], ch[1]);
        let post: String = ch[2..].iter().collect();
        if b != '{' {
            out.push_str(&format!("{{{a}}}{{{b}}}{post}"));
        } else {
            out.push_str(&format!("{{{a}}}{b}{post}"));
        }
    }
    out
}

/// Python's `int(s)` for the reference's `_fix_a_slash_b`, rendered back with `str()`.
fn python_int_repr(s: &str) -> Option<String> {
    let t = s.trim();
    let (sign, digits) = match t.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", t.strip_prefix('+').unwrap_or(t)),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    if digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let d: String = digits.chars().filter(|&c| c != '_').collect();
    let d = d.trim_start_matches('0');
    Some(if d.is_empty() {
        "0".into()
    } else {
        format!("{sign}{d}")
    })
}

/// The reference's `_fix_a_slash_b`: `3/4` → `\frac{3}{4}` for canonical integers.
fn fix_a_slash_b(s: &str) -> String {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() != 2 {
        return s.to_string();
    }
    let conv = |p: &str| {
        if p.contains("sqrt") {
            Some(p.to_string())
        } else {
            python_int_repr(p)
        }
    };
    match (conv(parts[0]), conv(parts[1])) {
        (Some(a), Some(b)) if format!("{a}/{b}") == s => format!("\\frac{{{a}}}{{{b}}}"),
        _ => s.to_string(),
    }
}

/// Strict: `v = value` names a value when the left side is one letter and the right side has no
/// variables (`x = 3`), but is an equation to keep when it does (`y = 2x + 1`).
fn is_value_assignment(lhs: &str, rhs: &str) -> bool {
    let lhs = lhs.trim();
    if lhs.chars().count() != 1 || !lhs.chars().all(|c| c.is_ascii_alphabetic()) {
        return false;
    }
    let mut letters = false;
    let mut chars = rhs.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            while chars.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                chars.next();
            }
        } else if c.is_ascii_alphabetic() && c != 'e' && c != 'i' {
            letters = true;
        }
    }
    !letters
}

/// The reference's `strip_string` (or the strict variant).
pub fn strip_string(input: &str, opts: NormalizeOptions) -> String {
    let mut s = input.trim().replace('\n', "");
    s = s.trim_end_matches('.').to_string();
    s = s.replace("\\!", "");
    s = array_to_pmatrix(&s);
    s = s
        .replace("bmatrix", "pmatrix")
        .replace("tfrac", "frac")
        .replace("dfrac", "frac");
    s = s
        .replace("\\neq", "\\ne")
        .replace("\\leq", "\\le")
        .replace("\\geq", "\\ge");
    s = s
        .replace("\\left", "")
        .replace("\\right", "")
        .replace("\\{", "{")
        .replace("\\}", "}");
    let t = drop_trailing_text(&s);
    if !t.is_empty() && t != s {
        s = t;
    }
    if opts.strict {
        s = strip_trailing_unit_word(&s);
    } else if !opts.skip_unit {
        s = strip_unit_words(&s);
    }
    s = s.replace("^{\\circ}", "").replace("^\\circ", "");
    s = s
        .replace("\\$", "")
        .replace('$', "")
        .replace("\\(", "")
        .replace("\\)", "");
    s = convert_word_number(&s);
    s = unwrap_command(&s, "\\text{", true);
    let keys: &[&str] = if opts.strict {
        &["x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"]
    } else {
        &[
            "x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to",
        ]
    };
    for key in keys {
        s = s.replace(key, "");
    }
    s = s
        .replace("\\emptyset", "{}")
        .replace("(-\\infty,\\infty)", "\\mathbb{R}");
    s = s.replace("\\%", "").replace('%', "");
    s = s.replace(" .", " 0.").replace("{.", "{0.");
    s = s.replace("infinity", "\\infty");
    if !s.contains("\\infty") {
        s = s.replace("inf", "\\infty");
    }
    s = s.replace("+\\inity", "\\infty");
    if !opts.strict {
        s = s.replace("and", "");
    }
    s = s.replace("\\mathbf", "");
    s = unwrap_command(&s, "\\mbox{", opts.strict);
    if !opts.strict && s.contains('j') && !s.contains('i') {
        s = s.replace('j', "i");
    }
    s = drop_zero_decimals(&s);
    if s.is_empty() {
        return s;
    }
    if s.starts_with('.') {
        s.insert(0, '0');
    }
    let eq: Vec<&str> = s.split('=').collect();
    if eq.len() == 2
        && eq[0].chars().count() <= 2
        && (!opts.strict || is_value_assignment(eq[0], eq[1]))
    {
        s = eq[1].to_string();
    }
    s = brace_sqrt_argument(&s);
    s = s.replace(' ', "");
    s = fix_fracs(&s);
    fix_a_slash_b(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> String {
        strip_string(
            s,
            NormalizeOptions {
                skip_unit: false,
                strict: false,
            },
        )
    }

    #[test]
    fn reference_normalisation_steps() {
        assert_eq!(q("\\dfrac{1}{2}"), "\\frac{1}{2}");
        assert_eq!(q("\\frac12"), "\\frac{1}{2}");
        assert_eq!(q("59.00"), "59");
        assert_eq!(q("59^\\circ"), "59");
        assert_eq!(
            q("\\left( 3, \\frac{\\pi}{2} \\right)"),
            "(3,\\frac{\\pi}{2})"
        );
        assert_eq!(q("x = 3"), "3");
        assert_eq!(q("3/4"), "\\frac{3}{4}");
        assert_eq!(q("03/4"), "03/4");
        assert_eq!(q("5\\sqrt2"), "5\\sqrt{2}");
        assert_eq!(q("10\\%"), "10");
        assert_eq!(q(".5"), "0.5");
        assert_eq!(q("\\frac{58}{7} \\text{ inches}"), "\\frac{58}{7}");
        assert_eq!(q("59 dollars"), "59dollars");
        assert_eq!(
            q("\\begin{array}{cc}1&2\\end{array}"),
            "\\begin{pmatrix}1&2\\end{pmatrix}"
        );
        assert_eq!(q("1.0,2.00"), "1,2");
    }
}
