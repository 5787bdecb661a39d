//! The tokens of the LaTeX parser (`latex.rs`) and the lexer that makes them, in either dialect.

use super::latex::{syntax, Dialect, ParseError};

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A number literal as written.
    Num(String),
    /// One ASCII letter (a symbol, or `e`/`i` in the strict dialect).
    Letter(char),
    /// A command name without its backslash.
    Cmd(String),
    /// Punctuation or an operator.
    P(char),
    /// `\{`.
    LBraceLit,
    /// `\}`.
    RBraceLit,
    /// `\le` and its spellings.
    Le,
    /// `\ge` and its spellings.
    Ge,
    /// `\ne`.
    Ne,
    /// A character outside the grammar; sympy's lexer is lazy, so it is an error only once the
    /// parser looks at it.
    Bad(String),
}

/// Commands that only space or size, dropped by the lexer.
const SPACING: &[&str] = &[
    "quad",
    "qquad",
    "left",
    "right",
    "displaystyle",
    "mathit",
    "limits",
    "big",
    "Big",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
];

/// The tokens of `s`; in the sympy dialect a character outside the grammar ends the list with
/// a [`Tok::Bad`] (reported only if the parser reaches it).
pub fn lex(s: &str, dialect: Dialect) -> Result<Vec<Tok>, ParseError> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
            continue;
        }
        if ch.is_ascii_digit()
            || (ch == '.'
                && dialect == Dialect::Strict
                && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let mut j = i;
            let mut text = String::new();
            while j < c.len() && c[j].is_ascii_digit() {
                text.push(c[j]);
                j += 1;
            }
            // sympy's NUMBER accepts thousands groups: 1,000 → 1000.
            while dialect == Dialect::Sympy
                && j + 3 < c.len()
                && c[j] == ','
                && c[j + 1..j + 4].iter().all(|d| d.is_ascii_digit())
                && !c.get(j + 4).is_some_and(|d| d.is_ascii_digit())
            {
                text.extend(&c[j + 1..j + 4]);
                j += 4;
            }
            if j < c.len() && c[j] == '.' {
                if c.get(j + 1).is_some_and(|d| d.is_ascii_digit()) {
                    text.push('.');
                    j += 1;
                    while j < c.len() && c[j].is_ascii_digit() {
                        text.push(c[j]);
                        j += 1;
                    }
                } else if dialect == Dialect::Sympy && j + 1 == c.len() {
                    out.push(Tok::Bad("number ends with '.'".into()));
                    return Ok(out);
                }
            }
            // sympy reads a thin space between digit groups as part of the number: 3\,200.
            while dialect == Dialect::Sympy
                && c.get(j) == Some(&'\\')
                && c.get(j + 1) == Some(&',')
                && c.get(j + 2).is_some_and(|d| d.is_ascii_digit())
            {
                j += 2;
                while j < c.len() && c[j].is_ascii_digit() {
                    text.push(c[j]);
                    j += 1;
                }
            }
            if text.len() > 400 {
                return Err(syntax("number literal too long"));
            }
            out.push(Tok::Num(text));
            i = j;
            continue;
        }
        if ch.is_ascii_alphabetic() {
            out.push(Tok::Letter(ch));
            i += 1;
            continue;
        }
        if ch == '\\' {
            let mut j = i + 1;
            while j < c.len() && c[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j > i + 1 {
                let name: String = c[i + 1..j].iter().collect();
                i = j;
                match name.as_str() {
                    n if SPACING.contains(&n) => {}
                    "le" | "leq" | "leqslant" => out.push(Tok::Le),
                    "ge" | "geq" | "geqslant" => out.push(Tok::Ge),
                    "ne" | "neq" if dialect == Dialect::Strict => out.push(Tok::Ne),
                    "neq" => out.push(Tok::Ne),
                    "lt" => out.push(Tok::P('<')),
                    "gt" => out.push(Tok::P('>')),
                    "dfrac" | "tfrac" => out.push(Tok::Cmd("frac".into())),
                    _ => out.push(Tok::Cmd(name)),
                }
                continue;
            }
            match c.get(i + 1) {
                Some(',' | ':' | ';' | '!') => i += 2,
                Some('{') => {
                    out.push(Tok::LBraceLit);
                    i += 2;
                }
                Some('}') => {
                    out.push(Tok::RBraceLit);
                    i += 2;
                }
                Some(' ') if dialect == Dialect::Strict => i += 2,
                Some('%') if dialect == Dialect::Strict => i += 2,
                _ => {
                    out.push(Tok::Bad(format!("unexpected '\\' at {i}")));
                    return Ok(out);
                }
            }
            continue;
        }
        match ch {
            '+' | '-' | '*' | '/' | '^' | '_' | '(' | ')' | '{' | '}' | '[' | ']' | '|' | ','
            | '=' | '<' | '>' | '!' | '\'' | ':' | '.' => out.push(Tok::P(ch)),
            _ if dialect == Dialect::Strict => match ch {
                'π' => out.push(Tok::Cmd("pi".into())),
                '∞' => out.push(Tok::Cmd("infty".into())),
                '−' | '–' => out.push(Tok::P('-')),
                '×' | '·' => out.push(Tok::P('*')),
                '≤' => out.push(Tok::Le),
                '≥' => out.push(Tok::Ge),
                '≠' => out.push(Tok::Ne),
                '°' | '%' => {}
                _ => return Err(syntax(format!("unexpected character {ch:?}"))),
            },
            _ => {
                out.push(Tok::Bad(format!("unexpected character {ch:?}")));
                return Ok(out);
            }
        }
        i += 1;
    }
    Ok(out)
}

/// The text of a token run, without its outer braces.
pub fn render_tokens(toks: &[Tok]) -> String {
    let mut s = String::new();
    for t in toks {
        match t {
            Tok::Num(n) => s.push_str(n),
            Tok::Letter(c) | Tok::P(c) => s.push(*c),
            Tok::Cmd(c) => {
                s.push('\\');
                s.push_str(c);
            }
            Tok::LBraceLit => s.push_str("\\{"),
            Tok::RBraceLit => s.push_str("\\}"),
            Tok::Bad(_) => {}
            Tok::Le => s.push_str("\\le"),
            Tok::Ge => s.push_str("\\ge"),
            Tok::Ne => s.push_str("\\ne"),
        }
    }
    s.trim_start_matches('{').trim_end_matches('}').to_string()
}
