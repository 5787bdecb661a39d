//! A LaTeX math parser into [`Expr`], in two dialects. `Sympy` reproduces what sympy's
//! `parse_latex` (the reference's parser) makes of an answer: `\pi`, `e`, `i` are plain symbols,
//! a letter before `(` is a function, and only the longest parseable prefix is read (`1,2` → 1).
//! `Strict` reads the whole input with the usual mathematical meaning of constants.

use super::budget::{Budget, BudgetError, MAX_DEPTH, MAX_TREE_DEPTH};
use super::expr::{check_depth, Constant, Expr, RelOp};
use super::latex_lexer::{lex, render_tokens, Tok};
use super::rational::Rational;

/// Which reading of LaTeX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// sympy's `parse_latex` (used by the reference grader).
    Sympy,
    /// Mathematical meaning, whole input.
    Strict,
}

/// Why a parse failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// A character or construct outside the grammar.
    #[error("cannot parse: {0}")]
    Syntax(String),
    /// The budget ran out.
    #[error(transparent)]
    Budget(#[from] BudgetError),
}

/// A syntax error with its message.
pub(super) fn syntax(msg: impl Into<String>) -> ParseError {
    ParseError::Syntax(msg.into())
}

const FUNCS: &[&str] = &[
    "sin", "cos", "tan", "cot", "sec", "csc", "sinh", "cosh", "tanh", "arcsin", "arccos", "arctan",
    "exp", "ln", "log", "lg",
];

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    dialect: Dialect,
    budget: &'a mut Budget,
    depth: usize,
    abs_depth: usize,
    /// Furthest token index looked at (lexer errors count only once reached).
    seen: std::cell::Cell<usize>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        if self.pos > self.seen.get() {
            self.seen.set(self.pos);
        }
        self.toks.get(self.pos)
    }

    /// Runs `f` speculatively: in the sympy dialect a continuation that does not parse ends the
    /// parse before it (ANTLR's prediction exits the loop); in the strict dialect it is an error.
    fn try_continue<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<Option<T>, ParseError> {
        let (pos, depth, abs) = (self.pos, self.depth, self.abs_depth);
        match f(self) {
            Ok(v) => Ok(Some(v)),
            Err(ParseError::Syntax(_)) if self.dialect == Dialect::Sympy => {
                self.pos = pos;
                self.depth = depth;
                self.abs_depth = abs;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
    fn peek_p(&self, ch: char) -> bool {
        self.peek() == Some(&Tok::P(ch))
    }
    fn eat_p(&mut self, ch: char) -> bool {
        if self.peek_p(ch) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_p(&mut self, ch: char) -> Result<(), ParseError> {
        if self.eat_p(ch) {
            Ok(())
        } else {
            Err(syntax(format!("expected '{ch}'")))
        }
    }
    /// Left-nested chains (`a/b/c`, `x^2^2`, `n!!`) grow the tree without recursing in the
    /// parser; they share the depth limit.
    fn chain_limit(count: usize) -> Result<(), ParseError> {
        if count > MAX_DEPTH {
            return Err(
                BudgetError::Limit(format!("operator chain longer than {MAX_DEPTH}")).into(),
            );
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.budget.tick()?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(BudgetError::Limit(format!("nesting deeper than {MAX_DEPTH}")).into());
        }
        Ok(())
    }

    fn relation(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.expr()?;
        let mut count = 0usize;
        loop {
            count += 1;
            Self::chain_limit(count)?;
            let op = match self.peek() {
                Some(Tok::P('=')) => RelOp::Eq,
                Some(Tok::P('<')) => RelOp::Lt,
                Some(Tok::P('>')) => RelOp::Gt,
                Some(Tok::Le) => RelOp::Le,
                Some(Tok::Ge) => RelOp::Ge,
                Some(Tok::Ne) => RelOp::Ne,
                _ => return Ok(lhs),
            };
            let Some(rhs) = self.try_continue(|p| {
                p.pos += 1;
                p.expr()
            })?
            else {
                return Ok(lhs);
            };
            lhs = Expr::Rel(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut terms = vec![self.mp()?];
        while self.peek_p('+') || self.peek_p('-') {
            let next = self.try_continue(|p| {
                let minus = p.eat_p('-');
                if !minus {
                    p.expect_p('+')?;
                }
                let t = p.mp()?;
                Ok(if minus { Expr::Neg(Box::new(t)) } else { t })
            })?;
            match next {
                Some(t) => terms.push(t),
                None => break,
            }
        }
        self.depth -= 1;
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::Add(terms)
        })
    }

    fn mp(&mut self) -> Result<Expr, ParseError> {
        let mut acc = self.unary()?;
        let mut count = 0usize;
        loop {
            count += 1;
            Self::chain_limit(count)?;
            let div = match self.peek() {
                Some(Tok::P('*')) => false,
                Some(Tok::Cmd(c)) if c == "cdot" || c == "times" => false,
                Some(Tok::P('/')) | Some(Tok::P(':')) => true,
                Some(Tok::Cmd(c)) if c == "div" => true,
                _ => return Ok(acc),
            };
            let Some(rhs) = self.try_continue(|p| {
                p.pos += 1;
                p.unary()
            })?
            else {
                return Ok(acc);
            };
            acc = if div {
                Expr::Div(Box::new(acc), Box::new(rhs))
            } else {
                Expr::Mul(vec![acc, rhs])
            };
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let r = if self.eat_p('-') {
            Expr::Neg(Box::new(self.unary()?))
        } else if self.eat_p('+') {
            self.unary()?
        } else {
            let mut items = vec![self.postfix()?];
            while self.starts_item() {
                match self.try_continue(|p| p.postfix())? {
                    Some(e) => items.push(e),
                    None => break,
                }
            }
            if items.len() == 1 {
                items.pop().expect("one item")
            } else {
                Expr::Mul(items)
            }
        };
        self.depth -= 1;
        Ok(r)
    }

    fn starts_item(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_) | Tok::Letter(_) | Tok::LBraceLit) => true,
            Some(Tok::Cmd(c)) => !matches!(
                c.as_str(),
                "cdot" | "times" | "div" | "to" | "rightarrow" | "in" | "pm" | "mp"
            ),
            Some(Tok::P('(' | '[' | '{')) => true,
            Some(Tok::P('|')) => self.abs_depth == 0,
            _ => false,
        }
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.power()?;
        let mut count = 0;
        while self.eat_p('!') {
            count += 1;
            Self::chain_limit(count)?;
            e = Expr::Func("factorial".into(), vec![e]);
        }
        Ok(e)
    }

    fn power(&mut self) -> Result<Expr, ParseError> {
        let mut base = self.comp()?;
        let mut count = 0;
        while self.peek_p('^') {
            count += 1;
            Self::chain_limit(count)?;
            let save = self.pos;
            self.pos += 1;
            match self.exponent()? {
                Some(e) => base = Expr::Pow(Box::new(base), Box::new(e)),
                None => {
                    self.pos = save;
                    if self.dialect == Dialect::Strict {
                        return Err(syntax("bad exponent"));
                    }
                    break;
                }
            }
        }
        Ok(base)
    }

    /// The argument of `^` or `_`: a braced expression or one atom.
    fn exponent(&mut self) -> Result<Option<Expr>, ParseError> {
        // Counted: `^----…1` and `x_x_x…` recurse here without passing through `expr`.
        self.enter()?;
        let r = self.exponent_body();
        self.depth -= 1;
        r
    }

    fn exponent_body(&mut self) -> Result<Option<Expr>, ParseError> {
        if self.eat_p('{') {
            let e = self.relation_or_expr()?;
            self.expect_p('}')?;
            return Ok(Some(e));
        }
        match self.peek().cloned() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                if self.dialect == Dialect::Strict && n.len() > 1 && !n.contains('.') {
                    // LaTeX reads x^23 as x^2·3: put the rest back as its own number.
                    self.toks.insert(self.pos, Tok::Num(n[1..].to_string()));
                    return Ok(Some(number(&n[..1])));
                }
                Ok(Some(number(&n)))
            }
            Some(Tok::Letter(_)) | Some(Tok::Cmd(_)) => Ok(Some(self.atom()?)),
            Some(Tok::P('-')) if self.dialect == Dialect::Strict => {
                self.pos += 1;
                Ok(self.exponent()?.map(|e| Expr::Neg(Box::new(e))))
            }
            _ => Ok(None),
        }
    }

    fn relation_or_expr(&mut self) -> Result<Expr, ParseError> {
        self.relation()
    }

    fn group(&mut self, open: char, close: char) -> Result<Expr, ParseError> {
        self.expect_p(open)?;
        let saved_abs = self.abs_depth;
        self.abs_depth = 0;
        let e = self.relation_or_expr()?;
        self.abs_depth = saved_abs;
        self.expect_p(close)?;
        Ok(e)
    }

    fn comp(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let r = match self.peek().cloned() {
            Some(Tok::P('(')) => self.group('(', ')')?,
            Some(Tok::P('[')) => self.group('[', ']')?,
            Some(Tok::P('{')) => self.group('{', '}')?,
            Some(Tok::LBraceLit) => {
                self.pos += 1;
                let e = self.relation_or_expr()?;
                if self.peek() != Some(&Tok::RBraceLit) {
                    return Err(syntax("expected '\\}'"));
                }
                self.pos += 1;
                e
            }
            Some(Tok::P('|')) => {
                self.pos += 1;
                self.abs_depth += 1;
                let e = self.expr()?;
                self.abs_depth -= 1;
                self.expect_p('|')?;
                Expr::Func("abs".into(), vec![e])
            }
            Some(Tok::Cmd(c)) if FUNCS.contains(&c.as_str()) => self.function(c)?,
            Some(Tok::Cmd(c)) if c == "frac" || c == "binom" || c == "dbinom" || c == "tbinom" => {
                self.pos += 1;
                let a = self.frac_arg()?;
                let b = self.frac_arg()?;
                if c == "frac" {
                    Expr::Div(Box::new(a), Box::new(b))
                } else {
                    Expr::Func("binomial".into(), vec![a, b])
                }
            }
            Some(Tok::Cmd(c)) if c == "sqrt" => {
                self.pos += 1;
                let index = if self.peek_p('[') {
                    Some(self.group('[', ']')?)
                } else {
                    None
                };
                let arg = if self.peek_p('{') {
                    self.group('{', '}')?
                } else if self.dialect == Dialect::Strict {
                    self.single_token_arg()?
                } else {
                    return Err(syntax("\\sqrt without braces"));
                };
                match index {
                    Some(n) => Expr::Pow(
                        Box::new(arg),
                        Box::new(Expr::Div(
                            Box::new(Expr::Num(Rational::int(1))),
                            Box::new(n),
                        )),
                    ),
                    None => Expr::Func("sqrt".into(), vec![arg]),
                }
            }
            Some(Tok::Cmd(c)) if c == "overline" => {
                self.pos += 1;
                Expr::Func("conjugate".into(), vec![self.group('{', '}')?])
            }
            Some(Tok::Cmd(c))
                if matches!(c.as_str(), "sum" | "prod" | "int" | "lim" | "begin" | "end")
                    && self.dialect == Dialect::Strict =>
            {
                return Err(syntax(format!("\\{c} is not supported")));
            }
            Some(Tok::Cmd(c)) if matches!(c.as_str(), "sum" | "prod" | "int" | "lim") => {
                return Err(syntax(format!("\\{c} is not supported")));
            }
            Some(Tok::Letter(_) | Tok::Cmd(_) | Tok::Num(_)) => self.atom_or_call()?,
            _ => return Err(syntax("expected an operand")),
        };
        self.depth -= 1;
        Ok(r)
    }

    fn single_token_arg(&mut self) -> Result<Expr, ParseError> {
        match self.peek().cloned() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(number(&n))
            }
            Some(Tok::Letter(_) | Tok::Cmd(_)) => self.atom(),
            _ => Err(syntax("expected an argument")),
        }
    }

    fn frac_arg(&mut self) -> Result<Expr, ParseError> {
        if self.peek_p('{') {
            return self.group('{', '}');
        }
        match self.peek().cloned() {
            Some(Tok::Num(n)) if n.chars().all(|c| c.is_ascii_digit()) => {
                self.pos += 1;
                let mut chars = n.chars();
                let first = chars.next().expect("non-empty number").to_string();
                let rest: String = chars.collect();
                if !rest.is_empty() {
                    self.toks.insert(self.pos, Tok::Num(rest));
                }
                Ok(number(&first))
            }
            Some(Tok::Letter(_)) => self.atom(),
            _ => Err(syntax("expected a \\frac argument")),
        }
    }

    fn function(&mut self, name: String) -> Result<Expr, ParseError> {
        self.pos += 1;
        let mut base: Option<Expr> = None;
        let mut power: Option<Expr> = None;
        for _ in 0..2 {
            if self.eat_p('_') {
                // `\log_28` is log base 2 of 8: a bare subscript is one digit.
                if let Some(Tok::Num(n)) = self.peek().cloned() {
                    if n.len() > 1 && n.chars().all(|c| c.is_ascii_digit()) {
                        self.toks[self.pos] = Tok::Num(n[..1].to_string());
                        self.toks.insert(self.pos + 1, Tok::Num(n[1..].to_string()));
                    }
                }
                base = Some(self.exponent()?.ok_or_else(|| syntax("bad subscript"))?);
            } else if self.eat_p('^') {
                power = Some(self.exponent()?.ok_or_else(|| syntax("bad superscript"))?);
            }
        }
        let arg = if self.peek_p('(') {
            self.group('(', ')')?
        } else {
            self.mp_no_func()?
        };
        let mut name = name;
        let inverse = matches!(&power, Some(Expr::Neg(b)) if **b == Expr::Num(Rational::int(1)));
        if inverse && ["sin", "cos", "tan"].contains(&name.as_str()) {
            name = format!("arc{name}");
            power = None;
        }
        let call = match name.as_str() {
            "ln" => Expr::Func("ln".into(), vec![arg]),
            "lg" => Expr::Func("log".into(), vec![arg, number("10")]),
            "log" => match base {
                Some(b) => Expr::Func("log".into(), vec![arg, b]),
                None if self.dialect == Dialect::Sympy => Expr::Func("ln".into(), vec![arg]),
                None => Expr::Func("log".into(), vec![arg, number("10")]),
            },
            _ => Expr::Func(name, vec![arg]),
        };
        Ok(match power {
            Some(p) => Expr::Pow(Box::new(call), Box::new(p)),
            None => call,
        })
    }

    /// The argument of a function written without parentheses: a product of items.
    fn mp_no_func(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.postfix()?];
        while self.starts_item()
            && !matches!(self.peek(), Some(Tok::Cmd(c)) if FUNCS.contains(&c.as_str()))
        {
            items.push(self.postfix()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Expr::Mul(items)
        })
    }

    fn atom_or_call(&mut self) -> Result<Expr, ParseError> {
        let callee_is_name = matches!(self.peek(), Some(Tok::Letter(_) | Tok::Cmd(_)));
        let a = self.atom()?;
        if callee_is_name && self.peek_p('(') {
            let name = match &a {
                Expr::Sym(n) => Some(n.clone()),
                _ => None,
            };
            let is_call = match self.dialect {
                Dialect::Sympy => name.is_some(),
                Dialect::Strict => name
                    .as_deref()
                    .is_some_and(|n| matches!(n, "f" | "g" | "h")),
            };
            if let (true, Some(name)) = (is_call, name) {
                self.pos += 1;
                let mut args = vec![self.expr()?];
                while self.eat_p(',') {
                    args.push(self.expr()?);
                }
                self.expect_p(')')?;
                return Ok(Expr::Func(name, args));
            }
        }
        Ok(a)
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        self.budget.tick()?;
        let tok = self
            .peek()
            .cloned()
            .ok_or_else(|| syntax("unexpected end"))?;
        self.pos += 1;
        let mut e = match tok {
            Tok::Num(n) => return Ok(number(&n)),
            Tok::Letter(ch) => match (self.dialect, ch) {
                (Dialect::Strict, 'e') => Expr::Const(Constant::E),
                (Dialect::Strict, 'i') => Expr::Const(Constant::I),
                _ => Expr::Sym(ch.to_string()),
            },
            Tok::Cmd(name) => match name.as_str() {
                "infty" => return Ok(Expr::Const(Constant::Infinity)),
                "pi" if self.dialect == Dialect::Strict => Expr::Const(Constant::Pi),
                "text" | "mathrm" | "textbf" | "operatorname" | "mathbb" | "mathcal"
                    if self.dialect == Dialect::Strict =>
                {
                    return Err(syntax(format!("\\{name} inside an expression")));
                }
                _ => Expr::Sym(name),
            },
            _ => return Err(syntax("expected a symbol")),
        };
        if self.peek_p('_') {
            let save = self.pos;
            self.pos += 1;
            let sub_start = self.pos;
            match self.exponent()? {
                Some(_) => {
                    let raw = render_tokens(&self.toks[sub_start..self.pos]);
                    if let Expr::Sym(n) = &e {
                        e = Expr::Sym(format!("{n}_{{{raw}}}"));
                    } else {
                        e = Expr::Sym(format!("{e:?}_{{{raw}}}"));
                    }
                }
                None => self.pos = save,
            }
        }
        while self.peek_p('\'') {
            self.pos += 1;
            if let Expr::Sym(n) = &e {
                e = Expr::Sym(format!("{n}'"));
            }
        }
        Ok(e)
    }
}

/// A number token as an exact rational, or a float when it is too long.
pub fn number(text: &str) -> Expr {
    match Rational::parse_decimal(text) {
        Some(r) => Expr::Num(r),
        None => Expr::Float(text.parse().unwrap_or(f64::NAN)),
    }
}

/// Parses `s` in `dialect`. Sympy: the longest parseable prefix; Strict: the whole input.
pub fn parse_latex(s: &str, dialect: Dialect, budget: &mut Budget) -> Result<Expr, ParseError> {
    let toks = lex(s, dialect)?;
    if toks.is_empty() {
        return Err(syntax("empty"));
    }
    let bad_at = toks.iter().position(|t| matches!(t, Tok::Bad(_)));
    let mut p = Parser {
        toks,
        pos: 0,
        dialect,
        budget,
        depth: 0,
        abs_depth: 0,
        seen: std::cell::Cell::new(0),
    };
    let e = p.relation();
    if let Some(b) = bad_at {
        if p.seen.get() >= b {
            if let Tok::Bad(msg) = &p.toks[b] {
                return Err(syntax(msg.clone()));
            }
        }
    }
    let e = e?;
    if dialect == Dialect::Strict && p.pos < p.toks.len() {
        return Err(syntax(format!("unexpected {:?}", p.toks[p.pos])));
    }
    check_depth(&e, MAX_TREE_DEPTH)?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sym(s: &str) -> Option<Expr> {
        parse_latex(s, Dialect::Sympy, &mut Budget::new(Duration::from_secs(1))).ok()
    }

    #[test]
    fn sympy_dialect_reads_a_prefix() {
        assert_eq!(sym("35,36,37"), sym("35"));
        assert_eq!(sym("2^-1"), sym("2"));
        assert!(sym("(1,2)").is_none());
        assert!(sym("x;y").is_none());
        assert!(sym("\\sqrt2").is_none());
        assert_eq!(sym("1,000"), sym("1000"));
    }

    #[test]
    fn strict_dialect_needs_the_whole_input() {
        let b = &mut Budget::new(Duration::from_secs(1));
        assert!(parse_latex("1,2", Dialect::Strict, b).is_err());
        assert!(parse_latex("\\frac{1}{2}x+\\sqrt[3]{8}", Dialect::Strict, b).is_ok());
    }
}
