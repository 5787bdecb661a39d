//! Profile `qwen25-math`: the reference grader's `math_equal`, quirks included (×100 and ÷100,
//! commas deleted before number parsing, bracket types ignored, lists split on every comma,
//! sympy's prefix parse of `parse_latex`).

use std::collections::HashSet;

use super::budget::{Budget, BudgetError, MAX_ANSWER_BYTES};
use super::expr::{equal_at_random_points, has_free_symbols, real_value, Expr};
use super::extract::choice_answer_clean;
use super::latex::{parse_latex, Dialect, ParseError};
use super::number::{is_close, parse_digits};
use super::pyexpr::parse_python;

/// Deepest recursion of list/matrix/equation comparisons.
const MAX_RECURSION: usize = 32;

fn is_numerical_equal(pred: &str, gold: &str) -> bool {
    match (parse_digits(pred), parse_digits(gold)) {
        (Some(p), Some(g)) => [g / 100.0, g, g * 100.0]
            .iter()
            .any(|&item| is_close(p, item, 1e-4)),
        _ => false,
    }
}

/// `re.findall(r"\{.*,.*\}", s)` turned into pmatrices, as the reference does for a gold
/// written with braces when the prediction is a pmatrix.
fn str_to_pmatrix(s: &str) -> String {
    let s = s.trim();
    // Greedy `\{.*,.*\}` on a single line: from the first '{' to the last '}' when a ',' lies
    // between; findall then continues after it (nothing is left).
    let (Some(a), Some(b)) = (s.find('{'), s.rfind('}')) else {
        return String::new();
    };
    if b <= a || !s[a..b].contains(',') {
        return String::new();
    }
    let m = s[a..=b].trim_matches(|c| c == '{' || c == '}');
    format!("\\begin{{pmatrix}}{}\\end{{pmatrix}}", m.replace(',', "\\"))
}

fn is_list_format(s: &str) -> bool {
    // regex.match(r"(\(|\[).+(\)|\])", s): opens with ( or [, and a ) or ] after one more char.
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, '(' | '[')) => {}
        _ => return false,
    }
    s.char_indices().skip(2).any(|(_, c)| c == ')' || c == ']')
}

const PMATRIX_OPEN: &str = "\\begin{pmatrix}";
const PMATRIX_CLOSE: &str = "\\end{pmatrix}";

fn is_matrix_format(s: &str) -> bool {
    (s.starts_with(PMATRIX_OPEN) || s.starts_with("\\begin{bmatrix}"))
        && (s.ends_with(PMATRIX_CLOSE) || s.ends_with("\\end{bmatrix}"))
}

/// Python's `s[1:-1]` on characters.
fn inner(s: &str) -> &str {
    let mut it = s.char_indices();
    let start = it.nth(1).map_or(s.len(), |(k, _)| k);
    let end = s.char_indices().last().map_or(0, |(k, _)| k);
    if start >= end {
        ""
    } else {
        &s[start..end]
    }
}

/// The reference grader, stateful only in its budget.
pub struct ReferenceGrader<'a> {
    /// The budget of this check.
    pub budget: &'a mut Budget,
}

impl ReferenceGrader<'_> {
    /// `math_equal(pred, gold)`.
    pub fn math_equal(
        &mut self,
        pred: &str,
        gold: &str,
        depth: usize,
    ) -> Result<bool, BudgetError> {
        self.budget.check()?;
        if depth > MAX_RECURSION {
            return Err(BudgetError::Limit("comparison nested too deeply".into()));
        }
        if pred.trim().to_lowercase() == gold.trim().to_lowercase() {
            return Ok(true);
        }
        if matches!(gold, "A" | "B" | "C" | "D" | "E") && choice_answer_clean(pred) == gold {
            return Ok(true);
        }
        if is_numerical_equal(pred, gold) {
            return Ok(true);
        }
        if pred.is_empty() {
            return Ok(false);
        }
        let mut reference = gold.trim().to_string();
        let prediction = pred.trim().to_string();
        if prediction.contains("pmatrix") && !reference.contains("pmatrix") {
            reference = str_to_pmatrix(&reference);
        }
        let (mut ps, mut rs) = (prediction.clone(), reference.clone());
        let has = |s: &str, a: char, b: char| s.starts_with(a) && s.ends_with(b);
        if (has(&ps, '[', ']') && !has(&rs, '(', ')'))
            || (has(&ps, '(', ')') && !has(&rs, '[', ']'))
        {
            let strip = |s: &str| {
                s.trim_matches(|c| matches!(c, '[' | ']' | '(' | ')'))
                    .to_string()
            };
            ps = strip(&ps);
            rs = strip(&rs);
        }
        let drop = |s: &str| {
            s.chars()
                .filter(|c| !matches!(c, '{' | '}' | '(' | ')'))
                .collect::<String>()
        };
        if drop(&ps).to_lowercase() == drop(&rs).to_lowercase() {
            return Ok(true);
        }
        if is_list_format(&prediction) && is_list_format(&reference) {
            let pp: Vec<&str> = inner(&prediction).split(',').collect();
            let rp: Vec<&str> = inner(&reference).split(',').collect();
            if pp.len() != rp.len() {
                return Ok(false);
            }
            for (a, b) in pp.iter().zip(&rp) {
                if !self.math_equal(a, b, depth + 1)? {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        if is_matrix_format(&prediction) && is_matrix_format(&reference) {
            return self.compare_matrices(&prediction, &reference, depth);
        }
        let (pe, re) = (
            prediction.matches('=').count(),
            reference.matches('=').count(),
        );
        let simple = |s: &str| {
            s.matches('=').count() == 1
                && s.split('=').next().unwrap_or("").trim().chars().count() <= 2
        };
        if pe == 1 && re == 1 {
            let p = format_equation(&prediction);
            let r = format_equation(&reference);
            return Ok(self.symbolic_equal(&p, &r)? || self.symbolic_equal(&format!("-({p})"), &r)?);
        } else if simple(&prediction) && re == 0 {
            let rhs = prediction.split('=').nth(1).unwrap_or("");
            return self.math_equal(rhs, &reference, depth + 1);
        } else if simple(&reference) && pe == 0 {
            let rhs = reference.split('=').nth(1).unwrap_or("");
            return self.math_equal(&prediction, rhs, depth + 1);
        }
        self.symbolic_equal(&prediction, &reference)
    }

    fn compare_matrices(&mut self, p: &str, r: &str, depth: usize) -> Result<bool, BudgetError> {
        let rows = |s: &str| -> Vec<String> {
            let open = PMATRIX_OPEN.len().min(s.len());
            let close = s.len().saturating_sub(PMATRIX_CLOSE.len()).max(open);
            s.get(open..close)
                .unwrap_or("")
                .split("\\\\")
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        };
        let (pl, rl) = (rows(p), rows(r));
        if pl.len() != rl.len() {
            return Ok(false);
        }
        for (a, b) in pl.iter().zip(&rl) {
            let (ap, bp): (Vec<&str>, Vec<&str>) = (a.split('&').collect(), b.split('&').collect());
            if ap.len() != bp.len() {
                return Ok(false);
            }
            for (x, y) in ap.iter().zip(&bp) {
                if !self.math_equal(x, y, depth + 1)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// sympy's reading of a string: `parse_latex`, then `parse_expr`, each first with `\\` → `\`.
    fn sympy_parse(&mut self, s: &str) -> Result<Option<Expr>, BudgetError> {
        if s.len() > MAX_ANSWER_BYTES {
            return Ok(None);
        }
        let unescaped = s.replace("\\\\", "\\");
        for text in [unescaped.as_str(), s] {
            match parse_latex(text, Dialect::Sympy, self.budget) {
                Ok(e) => return Ok(Some(e)),
                Err(ParseError::Budget(b)) => return Err(b),
                Err(ParseError::Syntax(_)) => {}
            }
        }
        for text in [unescaped.as_str(), s] {
            match parse_python(text, self.budget) {
                Ok(e) => return Ok(Some(e)),
                Err(ParseError::Budget(b)) => return Err(b),
                Err(ParseError::Syntax(_)) => {}
            }
        }
        Ok(None)
    }

    /// `symbolic_equal`: structural, then simplification (random points), then relation sides,
    /// then numeric values within 1e-4.
    fn symbolic_equal(&mut self, a: &str, b: &str) -> Result<bool, BudgetError> {
        let (Some(x), Some(y)) = (self.sympy_parse(a)?, self.sympy_parse(b)?) else {
            return Ok(a == b);
        };
        if x == y {
            return Ok(true);
        }
        match (&x, &y) {
            (Expr::Rel(_, xl, xr), Expr::Rel(_, yl, yr)) => {
                let dx = Expr::Func(
                    "abs".into(),
                    vec![Expr::Add(vec![(**xl).clone(), Expr::Neg(xr.clone())])],
                );
                let dy = Expr::Func(
                    "abs".into(),
                    vec![Expr::Add(vec![(**yl).clone(), Expr::Neg(yr.clone())])],
                );
                return equal_at_random_points(&dx, &dy, self.budget);
            }
            (Expr::Rel(..), _) | (_, Expr::Rel(..)) => return Ok(false),
            (Expr::Tuple(xs), Expr::Tuple(ys)) => {
                if xs.len() != ys.len() {
                    return Ok(false);
                }
                for (p, q) in xs.iter().zip(ys) {
                    if !(p == q || equal_at_random_points(p, q, self.budget)?) {
                        return Ok(false);
                    }
                }
                return Ok(true);
            }
            (Expr::Set(xs), Expr::Set(ys)) => {
                for (a, b) in [(xs, ys), (ys, xs)] {
                    // An element with an identical one on the other side needs no search: equal
                    // sets cost linear time, not one point evaluation per pair.
                    let identical: HashSet<String> = b.iter().map(|q| format!("{q:?}")).collect();
                    for p in a {
                        let key = format!("{p:?}");
                        // NaN is not equal to itself under `==`, which the search below uses.
                        if !key.contains("NaN") && identical.contains(&key) {
                            continue;
                        }
                        let mut found = false;
                        for q in b {
                            if p == q || equal_at_random_points(p, q, self.budget)? {
                                found = true;
                                break;
                            }
                        }
                        if !found {
                            return Ok(false);
                        }
                    }
                }
                return Ok(true);
            }
            (Expr::Tuple(_) | Expr::Set(_), _) | (_, Expr::Tuple(_) | Expr::Set(_)) => {
                return Ok(false)
            }
            _ => {}
        }
        if equal_at_random_points(&x, &y, self.budget)? {
            return Ok(true);
        }
        if !has_free_symbols(&x) && !has_free_symbols(&y) {
            if let (Some(u), Some(v)) = (real_value(&x, self.budget)?, real_value(&y, self.budget)?)
            {
                return Ok(is_close(u, v, 1e-4));
            }
        }
        Ok(false)
    }
}

/// `"{lhs} - ({rhs})"` of an equation with one `=`.
fn format_equation(s: &str) -> String {
    let mut parts = s.split('=');
    let l = parts.next().unwrap_or("").trim();
    let r = parts.next().unwrap_or("").trim();
    format!("{l} - ({r})")
}
