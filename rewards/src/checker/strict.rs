//! Profile `strict`: mathematically right verdicts. Numbers compare exactly when the gold is an
//! integer and within a relative 1e-4 otherwise; tuples and intervals in order with their bracket
//! types; sets and bare answer lists order-free with every element compared; matrices
//! element-wise; equations up to a non-zero factor; expressions at seeded random points.

use super::budget::{Budget, BudgetError};
use super::expr::{equal_at_random_points, eval_rational, real_value, Expr};
use super::extract::choice_letters;
use super::latex::{parse_latex, Dialect, ParseError};
use super::number::is_close;
use super::pyexpr::parse_python;

/// Relative tolerance for non-integer golds.
pub const STRICT_RELATIVE_TOLERANCE: f64 = 1e-4;

/// Splits on `sep` outside any brackets.
pub fn split_top_level<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let bytes = s.as_bytes();
    let mut k = 0;
    while k < s.len() {
        match bytes[k] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && bytes[k..].starts_with(sep.as_bytes()) {
            out.push(&s[start..k]);
            k += sep.len();
            start = k;
            continue;
        }
        k += 1;
    }
    out.push(&s[start..]);
    out
}

/// Whether the outer brackets of `s` (its first and last characters) enclose all of it.
fn enclosed(s: &str) -> Option<(char, &str, char)> {
    let open = s.chars().next()?;
    let close = s.chars().last()?;
    if !matches!(open, '(' | '[' | '{') || !matches!(close, ')' | ']' | '}') || s.len() < 2 {
        return None;
    }
    let body = &s[1..s.len() - 1];
    let mut depth = 0i32;
    for c in body.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    (depth == 0).then_some((open, body, close))
}

/// The strict comparison of two normalised answers.
pub struct StrictGrader<'a> {
    /// The budget of this check.
    pub budget: &'a mut Budget,
}

impl StrictGrader<'_> {
    /// Whether `pred` is equivalent to `gold`.
    pub fn equal(&mut self, pred: &str, gold: &str, depth: usize) -> Result<bool, BudgetError> {
        self.budget.check()?;
        if depth > 16 {
            return Err(BudgetError::Limit("answer nested too deeply".into()));
        }
        let (p, g) = (pred.trim(), gold.trim());
        if p.is_empty() || g.is_empty() {
            return Ok(p == g);
        }
        if p.to_lowercase() == g.to_lowercase() {
            return Ok(true);
        }
        if matches!(g, "A" | "B" | "C" | "D" | "E") {
            return Ok(choice_letters(p).last().map(|c| c.to_string()).as_deref() == Some(g));
        }
        // Unions of intervals, in order.
        let (pu, gu) = (split_top_level(p, "\\cup"), split_top_level(g, "\\cup"));
        if pu.len() > 1 || gu.len() > 1 {
            return self.all_pairs(&pu, &gu, depth);
        }
        // Matrices, element-wise.
        if let (Some(pm), Some(gm)) = (matrix_cells(p), matrix_cells(g)) {
            if pm.len() != gm.len() || pm.iter().zip(&gm).any(|(a, b)| a.len() != b.len()) {
                return Ok(false);
            }
            for (pr, gr) in pm.iter().zip(&gm) {
                if !self.all_pairs(pr, gr, depth)? {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        let pe = enclosed(p);
        let ge = enclosed(g);
        let p_items = split_top_level(pe.map_or(p, |e| e.1), ",");
        let g_items = split_top_level(ge.map_or(g, |e| e.1), ",");
        let as_set = |e: Option<(char, &str, char)>, items: usize| match e {
            Some(('{', _, '}')) => true,
            None => items > 1,
            _ => false,
        };
        let (p_set, g_set) = (as_set(pe, p_items.len()), as_set(ge, g_items.len()));
        if g_set || p_set {
            if !(g_set && p_set) {
                return Ok(false);
            }
            return self.same_multiset(&p_items, &g_items, depth);
        }
        if g_items.len() > 1 || p_items.len() > 1 {
            // Tuples and intervals: brackets must agree, elements in order.
            let (Some((po, _, pc)), Some((go, _, gc))) = (pe, ge) else {
                return Ok(false);
            };
            if po != go || pc != gc {
                return Ok(false);
            }
            return self.all_pairs(&p_items, &g_items, depth);
        }
        self.scalar_equal(p, g)
    }

    fn all_pairs(&mut self, p: &[&str], g: &[&str], depth: usize) -> Result<bool, BudgetError> {
        if p.len() != g.len() {
            return Ok(false);
        }
        for (a, b) in p.iter().zip(g) {
            if !self.equal(a, b, depth + 1)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn same_multiset(&mut self, p: &[&str], g: &[&str], depth: usize) -> Result<bool, BudgetError> {
        if p.len() != g.len() {
            return Ok(false);
        }
        let mut used = vec![false; g.len()];
        for a in p {
            let mut found = false;
            for (k, b) in g.iter().enumerate() {
                if !used[k] && self.equal(a, b, depth + 1)? {
                    used[k] = true;
                    found = true;
                    break;
                }
            }
            if !found {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn parse(&mut self, s: &str) -> Result<Option<Expr>, BudgetError> {
        match parse_latex(s, Dialect::Strict, self.budget) {
            Ok(e) => return Ok(Some(e)),
            Err(ParseError::Budget(b)) => return Err(b),
            Err(ParseError::Syntax(_)) => {}
        }
        match parse_python(s, self.budget) {
            Ok(e) => Ok(Some(e)),
            Err(ParseError::Budget(b)) => Err(b),
            Err(ParseError::Syntax(_)) => Ok(None),
        }
    }

    fn scalar_equal(&mut self, p: &str, g: &str) -> Result<bool, BudgetError> {
        let (Some(x), Some(y)) = (self.parse(p)?, self.parse(g)?) else {
            let squash = |s: &str| {
                s.chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
                    .to_lowercase()
            };
            return Ok(squash(p) == squash(g));
        };
        if x == y {
            return Ok(true);
        }
        if let (Expr::Rel(xo, xl, xr), Expr::Rel(yo, yl, yr)) = (&x, &y) {
            if xo != yo {
                return Ok(false);
            }
            // Same equation up to a non-zero constant factor: (xl-xr)/(yl-yr) is constant.
            let dx = Expr::Add(vec![(**xl).clone(), Expr::Neg(xr.clone())]);
            let dy = Expr::Add(vec![(**yl).clone(), Expr::Neg(yr.clone())]);
            let ratio = Expr::Div(Box::new(dx.clone()), Box::new(dy.clone()));
            let Some(r0) = super::expr::eval_complex(&ratio, 0, self.budget)? else {
                return Ok(false);
            };
            if !r0.is_finite() || r0.re.hypot(r0.im) < 1e-12 {
                return Ok(false);
            }
            let konst = Expr::Mul(vec![dy, Expr::Float(r0.re)]);
            return Ok(r0.im.abs() < 1e-9 && equal_at_random_points(&dx, &konst, self.budget)?);
        }
        if matches!(x, Expr::Rel(..) | Expr::Tuple(_) | Expr::Set(_))
            || matches!(y, Expr::Rel(..) | Expr::Tuple(_) | Expr::Set(_))
        {
            return Ok(false);
        }
        if let (Some(a), Some(b)) = (
            eval_rational(&x, self.budget)?,
            eval_rational(&y, self.budget)?,
        ) {
            if b.is_integer() || a == b {
                return Ok(a == b);
            }
            return Ok(is_close(a.to_f64(), b.to_f64(), STRICT_RELATIVE_TOLERANCE));
        }
        if let (Some(a), Some(b)) = (real_value(&x, self.budget)?, real_value(&y, self.budget)?) {
            let gold_integer = eval_rational(&y, self.budget)?.is_some_and(|r| r.is_integer());
            if gold_integer {
                return Ok(a == b);
            }
            return Ok(is_close(a, b, STRICT_RELATIVE_TOLERANCE));
        }
        equal_at_random_points(&x, &y, self.budget)
    }
}

/// The cells of a `pmatrix`, row by row.
fn matrix_cells(s: &str) -> Option<Vec<Vec<&str>>> {
    let body = s
        .strip_prefix("\\begin{pmatrix}")?
        .strip_suffix("\\end{pmatrix}")?;
    Some(
        body.split("\\\\")
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| r.split('&').map(str::trim).collect())
            .collect(),
    )
}
