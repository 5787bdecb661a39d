//! Profile `strict`: mathematically right verdicts. Rational values compare exactly; values known
//! only in floating point within the tolerances of `tolerance.rs`; tuples and intervals in order with their bracket
//! types; sets and bare answer lists order-free with every element compared; matrices
//! element-wise; equations up to a non-zero factor; expressions at seeded random points.

use std::collections::HashMap;

use super::budget::{Budget, BudgetError};
use super::expr::{equal_at_random_points, eval_complex, eval_rational, has_free_symbols, Expr};
use super::extract::choice_letters;
use super::latex::{parse_latex, Dialect, ParseError};
use super::pyexpr::parse_python;
use super::rational::Rational;
use super::tolerance::{has_plain_inputs, is_correct_rounding, values_match, written_as_decimal};

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
    /// Whether the data set is multiple choice, where a letter gold is matched by the answer's
    /// last choice letter. Elsewhere a letter is a symbol like any other: `x+C` is not `C`.
    pub choices: bool,
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
        if self.choices && matches!(g, "A" | "B" | "C" | "D" | "E") {
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

    /// Order-free comparison with repeats counted. Identical elements (as `equal` reads them:
    /// trimmed, case-insensitive) are paired through a hash map, then scalars of the same exact
    /// rational value; only what is left is compared pairwise, so equal sets written alike or
    /// with rational elements cost linear time rather than quadratic.
    fn same_multiset(&mut self, p: &[&str], g: &[&str], depth: usize) -> Result<bool, BudgetError> {
        if p.len() != g.len() {
            return Ok(false);
        }
        let key = |s: &str| s.trim().to_lowercase();
        let mut by_text: HashMap<String, usize> = HashMap::new();
        for b in g {
            *by_text.entry(key(b)).or_default() += 1;
        }
        let mut p_left = Vec::new();
        for a in p {
            match by_text.get_mut(&key(a)) {
                Some(n) if *n > 0 => *n -= 1,
                _ => p_left.push(*a),
            }
        }
        let mut g_left = Vec::new();
        for b in g {
            if let Some(n) = by_text.get_mut(&key(b)).filter(|n| **n > 0) {
                *n -= 1;
                g_left.push(*b);
            }
        }
        let (p_left, g_left) = self.pair_by_rational_value(p_left, g_left)?;
        let mut used = vec![false; g_left.len()];
        for a in &p_left {
            let mut found = false;
            for (k, b) in g_left.iter().enumerate() {
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

    /// Removes the pairs of scalar elements with the same exact rational value (which `equal`
    /// would call equal), returning the elements left on each side.
    fn pair_by_rational_value<'s>(
        &mut self,
        p: Vec<&'s str>,
        g: Vec<&'s str>,
    ) -> Result<(Vec<&'s str>, Vec<&'s str>), BudgetError> {
        let mut g_by_value: HashMap<Rational, Vec<usize>> = HashMap::new();
        let mut g_taken = vec![false; g.len()];
        for (k, b) in g.iter().enumerate() {
            if let Some(v) = self.scalar_rational(b)? {
                g_by_value.entry(v).or_default().push(k);
            }
        }
        let mut p_left = Vec::new();
        for a in p {
            let slot = match self.scalar_rational(a)? {
                Some(v) => g_by_value.get_mut(&v).and_then(Vec::pop),
                None => None,
            };
            match slot {
                Some(k) => g_taken[k] = true,
                None => p_left.push(a),
            }
        }
        let g_left = g
            .into_iter()
            .zip(g_taken)
            .filter_map(|(b, taken)| (!taken).then_some(b))
            .collect();
        Ok((p_left, g_left))
    }

    /// The exact rational value of an element `equal` would compare as a plain scalar.
    fn scalar_rational(&mut self, s: &str) -> Result<Option<Rational>, BudgetError> {
        let s = s.trim();
        let structured = s.is_empty()
            || enclosed(s).is_some()
            || matrix_cells(s).is_some()
            || split_top_level(s, ",").len() > 1
            || split_top_level(s, "\\cup").len() > 1
            || (self.choices && matches!(s, "A" | "B" | "C" | "D" | "E"));
        if structured {
            return Ok(None);
        }
        match self.parse(s)? {
            Some(e) => eval_rational(&e, self.budget),
            None => Ok(None),
        }
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
            // As for expressions below: `y=2x+1+10^{-10}` must not pass for `y=2x+1`.
            if !written_as_decimal(g) && !has_plain_inputs(&x, self.budget)? {
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
        let (pred_exact, gold_exact) = (
            eval_rational(&x, self.budget)?,
            eval_rational(&y, self.budget)?,
        );
        if let (Some(a), Some(b)) = (pred_exact, gold_exact) {
            return Ok(a == b || is_correct_rounding(p, b));
        }
        // A gold written as a decimal may be rounded, and a rational answer for an irrational
        // gold (`2.2360679775` for `\sqrt{5}`) can only be a rounding: both are compared as
        // approximations. Otherwise the gold is exact and so must the answer's value be.
        let approximate = written_as_decimal(g) || (pred_exact.is_some() && gold_exact.is_none());
        let exact_gold = !approximate;
        if !has_free_symbols(&x) && !has_free_symbols(&y) {
            let (Some(a), Some(b)) = (
                eval_complex(&x, 0, self.budget)?,
                eval_complex(&y, 0, self.budget)?,
            ) else {
                return Ok(false);
            };
            if !(a.is_finite() && b.is_finite()) {
                return Ok(false);
            }
            return values_match(&x, a, b, exact_gold, self.budget);
        }
        // Point evaluation agrees within 1e-8, which `x+10^{-10}` would pass for `x`: with an
        // exact gold the answer's numbers must be ones that cannot hide such a shift.
        if exact_gold && !has_plain_inputs(&x, self.budget)? {
            return Ok(false);
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
