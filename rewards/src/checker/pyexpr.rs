//! The Python-syntax reading of an answer (sympy's `parse_expr`, the reference's second try when
//! `parse_latex` fails): `x**2 - 1`, `sqrt(5)`, `3*I/5`, and `a, b` as a tuple.

use super::budget::{Budget, BudgetError, MAX_DEPTH, MAX_TREE_DEPTH};
use super::expr::{check_depth, Constant, Expr};
use super::latex::{number, ParseError};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(String),
    Name(String),
    Op(&'static str),
}

fn lex(s: &str) -> Result<Vec<Tok>, ParseError> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let mut j = i;
            while j < c.len() && (c[j].is_ascii_digit() || c[j] == '.') {
                j += 1;
            }
            let mut text: String = c[i..j].iter().collect();
            if j < c.len() && (c[j] == 'e' || c[j] == 'E') {
                let mut k = j + 1;
                if k < c.len() && (c[k] == '+' || c[k] == '-') {
                    k += 1;
                }
                if k < c.len() && c[k].is_ascii_digit() {
                    while k < c.len() && c[k].is_ascii_digit() {
                        k += 1;
                    }
                    text = c[i..k].iter().collect();
                    j = k;
                }
            }
            if text.matches('.').count() > 1 {
                return Err(ParseError::Syntax("malformed number".into()));
            }
            out.push(Tok::Num(text));
            i = j;
        } else if ch.is_ascii_alphabetic() || ch == '_' {
            let mut j = i;
            while j < c.len() && (c[j].is_ascii_alphanumeric() || c[j] == '_') {
                j += 1;
            }
            out.push(Tok::Name(c[i..j].iter().collect()));
            i = j;
        } else {
            let op = match (ch, c.get(i + 1)) {
                ('*', Some('*')) => "**",
                ('*', _) => "*",
                ('+', _) => "+",
                ('-', _) => "-",
                ('/', _) => "/",
                ('(', _) => "(",
                ('{', _) => "{",
                ('}', _) => "}",
                (')', _) => ")",
                (',', _) => ",",
                _ => {
                    return Err(ParseError::Syntax(format!(
                        "unexpected {ch:?} in a Python expression"
                    )))
                }
            };
            i += op.len();
            out.push(Tok::Op(op));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    budget: &'a mut Budget,
    depth: usize,
}

impl Parser<'_> {
    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.toks.get(self.pos), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn tuple(&mut self) -> Result<Expr, ParseError> {
        let first = self.sum()?;
        if !matches!(self.toks.get(self.pos), Some(Tok::Op(","))) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat(",") {
            if self.pos == self.toks.len() || matches!(self.toks.get(self.pos), Some(Tok::Op(")")))
            {
                break;
            }
            items.push(self.sum()?);
        }
        Ok(Expr::Tuple(items))
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.term()?];
        loop {
            if self.eat("+") {
                terms.push(self.term()?);
            } else if self.eat("-") {
                terms.push(Expr::Neg(Box::new(self.term()?)));
            } else {
                break;
            }
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::Add(terms)
        })
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut acc = self.factor()?;
        let mut count = 0usize;
        loop {
            count += 1;
            if count > MAX_DEPTH {
                return Err(
                    BudgetError::Limit(format!("operator chain longer than {MAX_DEPTH}")).into(),
                );
            }
            if self.eat("*") {
                acc = Expr::Mul(vec![acc, self.factor()?]);
            } else if self.eat("/") {
                acc = Expr::Div(Box::new(acc), Box::new(self.factor()?));
            } else {
                return Ok(acc);
            }
        }
    }

    fn factor(&mut self) -> Result<Expr, ParseError> {
        self.budget.tick()?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(BudgetError::Limit(format!("nesting deeper than {MAX_DEPTH}")).into());
        }
        let r = if self.eat("-") {
            Expr::Neg(Box::new(self.factor()?))
        } else if self.eat("+") {
            self.factor()?
        } else {
            let base = self.primary()?;
            if self.eat("**") {
                Expr::Pow(Box::new(base), Box::new(self.factor()?))
            } else {
                base
            }
        };
        self.depth -= 1;
        Ok(r)
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(number(&n))
            }
            Some(Tok::Op("{")) => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat("}") {
                    items.push(self.sum()?);
                    while self.eat(",") {
                        if self.eat("}") {
                            return Ok(Expr::Set(items));
                        }
                        items.push(self.sum()?);
                    }
                    if !self.eat("}") {
                        return Err(ParseError::Syntax("expected '}'".into()));
                    }
                }
                Ok(Expr::Set(items))
            }
            Some(Tok::Op("(")) => {
                self.pos += 1;
                let e = self.tuple()?;
                if !self.eat(")") {
                    return Err(ParseError::Syntax("expected ')'".into()));
                }
                Ok(e)
            }
            Some(Tok::Name(name)) => {
                self.pos += 1;
                if self.eat("(") {
                    let mut args = Vec::new();
                    if !self.eat(")") {
                        args.push(self.sum()?);
                        while self.eat(",") {
                            args.push(self.sum()?);
                        }
                        if !self.eat(")") {
                            return Err(ParseError::Syntax("expected ')'".into()));
                        }
                    }
                    let f = match name.as_str() {
                        "Abs" => "abs".to_string(),
                        "asin" | "acos" | "atan" => format!("arc{}", &name[1..]),
                        _ => name,
                    };
                    if f == "log" && args.len() == 1 {
                        return Ok(Expr::Func("ln".into(), args));
                    }
                    return Ok(Expr::Func(f, args));
                }
                Ok(match name.as_str() {
                    "pi" => Expr::Const(Constant::Pi),
                    "E" => Expr::Const(Constant::E),
                    "I" => Expr::Const(Constant::I),
                    "oo" => Expr::Const(Constant::Infinity),
                    "and" | "or" | "not" | "in" | "is" | "if" | "else" | "lambda" | "for"
                    | "None" | "True" | "False" => {
                        return Err(ParseError::Syntax(format!("keyword {name}")))
                    }
                    _ => Expr::Sym(name),
                })
            }
            _ => Err(ParseError::Syntax("expected an operand".into())),
        }
    }
}

/// Parses a whole Python-syntax expression.
pub fn parse_python(s: &str, budget: &mut Budget) -> Result<Expr, ParseError> {
    let toks = lex(s)?;
    if toks.is_empty() {
        return Err(ParseError::Syntax("empty".into()));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        budget,
        depth: 0,
    };
    let e = p.tuple()?;
    if p.pos < p.toks.len() {
        return Err(ParseError::Syntax("trailing input".into()));
    }
    check_depth(&e, MAX_TREE_DEPTH)?;
    Ok(e)
}
