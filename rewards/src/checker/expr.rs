//! The expression tree both LaTeX dialects and the Python dialect parse into, its exact
//! rational evaluation and its complex evaluation at seeded random points.

use super::budget::{Budget, BudgetError};
use super::rational::Rational;

/// A named constant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Constant {
    /// π.
    Pi,
    /// Euler's number.
    E,
    /// The imaginary unit.
    I,
    /// ∞ (sympy's `oo`).
    Infinity,
}

/// Relations of an equation or inequality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelOp {
    /// `=`.
    Eq,
    /// `\ne`.
    Ne,
    /// `<`.
    Lt,
    /// `\le`.
    Le,
    /// `>`.
    Gt,
    /// `\ge`.
    Ge,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number literal, exact when it is a finite decimal.
    Num(Rational),
    /// A literal that does not fit a rational (too many digits, exponent form).
    Float(f64),
    /// A free symbol, by name.
    Sym(String),
    /// A constant.
    Const(Constant),
    /// A sum.
    Add(Vec<Expr>),
    /// A product.
    Mul(Vec<Expr>),
    /// A quotient.
    Div(Box<Expr>, Box<Expr>),
    /// A power.
    Pow(Box<Expr>, Box<Expr>),
    /// A negation.
    Neg(Box<Expr>),
    /// A function applied to arguments (known names are evaluated, others are treated as
    /// uninterpreted functions).
    Func(String, Vec<Expr>),
    /// A relation.
    Rel(RelOp, Box<Expr>, Box<Expr>),
    /// An ordered tuple (the Python dialect's `a, b`).
    Tuple(Vec<Expr>),
    /// A set (the Python dialect's `{a, b}`): order and repeats do not matter.
    Set(Vec<Expr>),
}

impl Expr {
    /// Moves this node's children onto `out`, leaving it a leaf.
    fn take_children(&mut self, out: &mut Vec<Expr>) {
        let leaf = || Expr::Num(Rational::int(0));
        match self {
            Expr::Add(xs) | Expr::Mul(xs) | Expr::Func(_, xs) | Expr::Tuple(xs) | Expr::Set(xs) => {
                out.append(xs)
            }
            Expr::Div(a, b) | Expr::Pow(a, b) | Expr::Rel(_, a, b) => {
                out.push(std::mem::replace(&mut **a, leaf()));
                out.push(std::mem::replace(&mut **b, leaf()));
            }
            Expr::Neg(a) => out.push(std::mem::replace(&mut **a, leaf())),
            Expr::Num(_) | Expr::Float(_) | Expr::Sym(_) | Expr::Const(_) => {}
        }
    }
}

impl Drop for Expr {
    /// Iterative: the derived drop recurses once per level, and a tree as deep as the parser
    /// can build before its depth check (chains such as `1!!!…!`) would overflow a small stack.
    fn drop(&mut self) {
        if matches!(
            self,
            Expr::Num(_) | Expr::Float(_) | Expr::Sym(_) | Expr::Const(_)
        ) {
            return;
        }
        let mut pending = Vec::new();
        self.take_children(&mut pending);
        while let Some(mut node) = pending.pop() {
            node.take_children(&mut pending);
        }
    }
}

/// Fails when the tree is deeper than `limit`. The walk recurses at most `limit` levels, so it
/// is safe on any tree; every other walk (evaluation, comparison, clone) runs only on trees that
/// passed it.
pub fn check_depth(e: &Expr, limit: usize) -> Result<(), BudgetError> {
    fn deeper_than(e: &Expr, left: usize) -> bool {
        let Some(left) = left.checked_sub(1) else {
            return true;
        };
        match e {
            Expr::Add(xs) | Expr::Mul(xs) | Expr::Func(_, xs) | Expr::Tuple(xs) | Expr::Set(xs) => {
                xs.iter().any(|x| deeper_than(x, left))
            }
            Expr::Div(a, b) | Expr::Pow(a, b) | Expr::Rel(_, a, b) => {
                deeper_than(a, left) || deeper_than(b, left)
            }
            Expr::Neg(a) => deeper_than(a, left),
            Expr::Num(_) | Expr::Float(_) | Expr::Sym(_) | Expr::Const(_) => false,
        }
    }
    if deeper_than(e, limit) {
        return Err(BudgetError::Limit(format!(
            "expression nested deeper than {limit}"
        )));
    }
    Ok(())
}

/// A complex number, enough for evaluation at random points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct C {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

impl C {
    fn new(re: f64, im: f64) -> Self {
        Self { re, im }
    }
    fn real(re: f64) -> Self {
        Self { re, im: 0.0 }
    }
    fn add(self, o: C) -> C {
        C::new(self.re + o.re, self.im + o.im)
    }
    fn mul(self, o: C) -> C {
        C::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
    fn div(self, o: C) -> C {
        let d = o.re * o.re + o.im * o.im;
        C::new(
            (self.re * o.re + self.im * o.im) / d,
            (self.im * o.re - self.re * o.im) / d,
        )
    }
    fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn ln(self) -> C {
        C::new(self.abs().ln(), self.im.atan2(self.re))
    }
    fn exp(self) -> C {
        let m = self.re.exp();
        C::new(m * self.im.cos(), m * self.im.sin())
    }
    fn pow(self, e: C) -> C {
        if e.im == 0.0 && e.re.fract() == 0.0 && e.re.abs() <= 64.0 {
            let mut r = C::real(1.0);
            for _ in 0..(e.re.abs() as u32) {
                r = r.mul(self);
            }
            return if e.re < 0.0 { C::real(1.0).div(r) } else { r };
        }
        if self.re == 0.0 && self.im == 0.0 {
            return if e.re > 0.0 {
                C::real(0.0)
            } else {
                C::real(f64::NAN)
            };
        }
        e.mul(self.ln()).exp()
    }
    fn sin(self) -> C {
        C::new(
            self.re.sin() * self.im.cosh(),
            self.re.cos() * self.im.sinh(),
        )
    }
    fn cos(self) -> C {
        C::new(
            self.re.cos() * self.im.cosh(),
            -self.re.sin() * self.im.sinh(),
        )
    }
    /// Whether both parts are finite.
    pub fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
}

fn gamma_real(x: f64) -> f64 {
    if x > 171.0 {
        return f64::INFINITY;
    }
    if x.fract() == 0.0 && x >= 1.0 {
        return (1..x as u64).fold(1.0, |a, k| a * k as f64);
    }
    // Lanczos approximation (g = 7), accurate to ~1e-13 — enough for point comparisons.
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma_real(1.0 - x));
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (k, g) in G.iter().enumerate().skip(1) {
        a += g / (x + k as f64);
    }
    (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
}

/// A deterministic pseudo-random value in [0, 1) from a name and a point index.
fn hash_unit(name: &str, salt: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The value a free symbol takes at random point `point`: a complex number with both parts in
/// [0.3, 1.3) (signs varied by the point), the same in both compared expressions.
pub fn symbol_value(name: &str, point: u64) -> C {
    let re = 0.3 + hash_unit(name, 2 * point);
    let im = 0.3 + hash_unit(name, 2 * point + 1);
    let sign = if point % 2 == 1 { -1.0 } else { 1.0 };
    C::new(sign * re, im)
}

/// Evaluates at random point `point` with the budget; `Ok(None)` when it has no value
/// (a relation or tuple).
pub fn eval_complex(e: &Expr, point: u64, budget: &mut Budget) -> Result<Option<C>, BudgetError> {
    budget.tick()?;
    let v = match e {
        Expr::Num(r) => C::real(r.to_f64()),
        Expr::Float(f) => C::real(*f),
        Expr::Sym(name) => symbol_value(name, point),
        Expr::Const(Constant::Pi) => C::real(std::f64::consts::PI),
        Expr::Const(Constant::E) => C::real(std::f64::consts::E),
        Expr::Const(Constant::I) => C::new(0.0, 1.0),
        Expr::Const(Constant::Infinity) => C::real(f64::INFINITY),
        Expr::Add(xs) => {
            let mut acc = C::real(0.0);
            for x in xs {
                let Some(v) = eval_complex(x, point, budget)? else {
                    return Ok(None);
                };
                acc = acc.add(v);
            }
            acc
        }
        Expr::Mul(xs) => {
            let mut acc = C::real(1.0);
            for x in xs {
                let Some(v) = eval_complex(x, point, budget)? else {
                    return Ok(None);
                };
                acc = acc.mul(v);
            }
            acc
        }
        Expr::Div(a, b) => match (
            eval_complex(a, point, budget)?,
            eval_complex(b, point, budget)?,
        ) {
            (Some(a), Some(b)) => a.div(b),
            _ => return Ok(None),
        },
        Expr::Pow(a, b) => match (
            eval_complex(a, point, budget)?,
            eval_complex(b, point, budget)?,
        ) {
            (Some(a), Some(b)) => {
                if b.abs() > 1e4 || a.abs() > 1e150 {
                    // Past any exponent an answer would write out: no finite comparable value.
                    C::real(f64::INFINITY)
                } else {
                    a.pow(b)
                }
            }
            _ => return Ok(None),
        },
        Expr::Neg(a) => match eval_complex(a, point, budget)? {
            Some(v) => C::new(-v.re, -v.im),
            None => return Ok(None),
        },
        Expr::Func(name, args) => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                let Some(v) = eval_complex(a, point, budget)? else {
                    return Ok(None);
                };
                vals.push(v);
            }
            apply_function(name, &vals, point)
        }
        Expr::Rel(..) | Expr::Tuple(_) | Expr::Set(_) => return Ok(None),
    };
    Ok(Some(v))
}

fn apply_function(name: &str, v: &[C], point: u64) -> C {
    let one = |f: fn(C) -> C| {
        if v.len() == 1 {
            f(v[0])
        } else {
            C::real(f64::NAN)
        }
    };
    match name {
        "sin" => one(C::sin),
        "cos" => one(C::cos),
        "tan" => one(|x| x.sin().div(x.cos())),
        "cot" => one(|x| x.cos().div(x.sin())),
        "sec" => one(|x| C::real(1.0).div(x.cos())),
        "csc" => one(|x| C::real(1.0).div(x.sin())),
        "exp" => one(C::exp),
        "ln" => one(C::ln),
        "sqrt" => one(|x| x.pow(C::real(0.5))),
        "abs" => one(|x| C::real(x.abs())),
        "sinh" => one(|x| {
            x.exp()
                .add(x.mul(C::real(-1.0)).exp().mul(C::real(-1.0)))
                .mul(C::real(0.5))
        }),
        "cosh" => one(|x| x.exp().add(x.mul(C::real(-1.0)).exp()).mul(C::real(0.5))),
        "tanh" => one(|x| {
            let (a, b) = (x.exp(), x.mul(C::real(-1.0)).exp());
            a.add(b.mul(C::real(-1.0))).div(a.add(b))
        }),
        "arcsin" | "asin" => one(|x| {
            if x.im == 0.0 && x.re.abs() <= 1.0 {
                C::real(x.re.asin())
            } else {
                C::real(f64::NAN)
            }
        }),
        "arccos" | "acos" => one(|x| {
            if x.im == 0.0 && x.re.abs() <= 1.0 {
                C::real(x.re.acos())
            } else {
                C::real(f64::NAN)
            }
        }),
        "arctan" | "atan" => one(|x| {
            if x.im == 0.0 {
                C::real(x.re.atan())
            } else {
                C::real(f64::NAN)
            }
        }),
        "conjugate" => one(|x| C::new(x.re, -x.im)),
        "factorial" => one(|x| {
            if x.im == 0.0 {
                C::real(gamma_real(x.re + 1.0))
            } else {
                C::real(f64::NAN)
            }
        }),
        "log" => match v.len() {
            1 => v[0].ln(),
            2 => v[0].ln().div(v[1].ln()),
            _ => C::real(f64::NAN),
        },
        "binomial" if v.len() == 2 && v[0].im == 0.0 && v[1].im == 0.0 => C::real(
            gamma_real(v[0].re + 1.0)
                / (gamma_real(v[1].re + 1.0) * gamma_real(v[0].re - v[1].re + 1.0)),
        ),
        _ => {
            // An uninterpreted function: a smooth pseudo-random function of its arguments.
            let mut acc = C::real(hash_unit(name, 1000 + point));
            for (k, x) in v.iter().enumerate() {
                let w = C::new(
                    0.5 + hash_unit(name, 2000 + k as u64),
                    hash_unit(name, 3000 + k as u64),
                );
                acc = acc.add(w.mul(*x).sin());
            }
            acc
        }
    }
}

/// Exact value when the expression is built from rationals with `+ - * /` and integer powers.
pub fn eval_rational(e: &Expr, budget: &mut Budget) -> Result<Option<Rational>, BudgetError> {
    budget.tick()?;
    Ok(match e {
        Expr::Num(r) => Some(*r),
        Expr::Add(xs) => {
            let mut acc = Rational::int(0);
            for x in xs {
                match eval_rational(x, budget)?.and_then(|v| acc.add(v)) {
                    Some(v) => acc = v,
                    None => return Ok(None),
                }
            }
            Some(acc)
        }
        Expr::Mul(xs) => {
            let mut acc = Rational::int(1);
            for x in xs {
                match eval_rational(x, budget)?.and_then(|v| acc.mul(v)) {
                    Some(v) => acc = v,
                    None => return Ok(None),
                }
            }
            Some(acc)
        }
        Expr::Div(a, b) => match (eval_rational(a, budget)?, eval_rational(b, budget)?) {
            (Some(a), Some(b)) => a.div(b),
            _ => None,
        },
        Expr::Neg(a) => eval_rational(a, budget)?.and_then(Rational::neg),
        Expr::Pow(a, b) => match (eval_rational(a, budget)?, eval_rational(b, budget)?) {
            (Some(a), Some(b)) if b.is_integer() => a.pow(b.num),
            _ => None,
        },
        _ => None,
    })
}

/// Whether the expression mentions a free symbol or an uninterpreted function.
pub fn has_free_symbols(e: &Expr) -> bool {
    match e {
        Expr::Sym(_) => true,
        Expr::Num(_) | Expr::Float(_) | Expr::Const(_) => false,
        Expr::Add(xs) | Expr::Mul(xs) | Expr::Tuple(xs) | Expr::Set(xs) => {
            xs.iter().any(has_free_symbols)
        }
        Expr::Div(a, b) | Expr::Pow(a, b) | Expr::Rel(_, a, b) => {
            has_free_symbols(a) || has_free_symbols(b)
        }
        Expr::Neg(a) => has_free_symbols(a),
        Expr::Func(name, args) => {
            !KNOWN_FUNCTIONS.contains(&name.as_str()) || args.iter().any(has_free_symbols)
        }
    }
}

/// Functions the evaluator knows.
pub const KNOWN_FUNCTIONS: &[&str] = &[
    "sin",
    "cos",
    "tan",
    "cot",
    "sec",
    "csc",
    "exp",
    "ln",
    "sqrt",
    "abs",
    "sinh",
    "cosh",
    "tanh",
    "arcsin",
    "asin",
    "arccos",
    "acos",
    "arctan",
    "atan",
    "conjugate",
    "factorial",
    "log",
    "binomial",
];

/// Number of random points compared (seeded by the point index).
pub const RANDOM_POINTS: u64 = 6;
/// Relative tolerance of a point comparison.
pub const POINT_TOLERANCE: f64 = 1e-8;

fn close_c(a: C, b: C) -> bool {
    let d = a.add(b.mul(C::real(-1.0))).abs();
    d <= POINT_TOLERANCE * a.abs().max(b.abs()).max(1.0)
}

/// Whether two expressions agree at every one of the seeded random points where either is
/// finite (finite at one side only means unequal; non-finite at both is skipped; no point
/// compared means unknown and returns false).
pub fn equal_at_random_points(
    a: &Expr,
    b: &Expr,
    budget: &mut Budget,
) -> Result<bool, BudgetError> {
    let mut compared = 0;
    for point in 0..RANDOM_POINTS {
        let (va, vb) = match (
            eval_complex(a, point, budget)?,
            eval_complex(b, point, budget)?,
        ) {
            (Some(x), Some(y)) => (x, y),
            _ => return Ok(false),
        };
        match (va.is_finite(), vb.is_finite()) {
            (true, true) => {
                if !close_c(va, vb) {
                    return Ok(false);
                }
                compared += 1;
            }
            // Overflowed or undefined on both sides: no evidence either way.
            (false, false) => {}
            _ => return Ok(false),
        }
    }
    Ok(compared > 0)
}

/// The value when the expression is a real constant (no free symbols).
pub fn real_value(e: &Expr, budget: &mut Budget) -> Result<Option<f64>, BudgetError> {
    if has_free_symbols(e) {
        return Ok(None);
    }
    Ok(eval_complex(e, 0, budget)?.and_then(|v| {
        (v.im.abs() <= 1e-12 * v.re.abs().max(1.0) && v.re.is_finite()).then_some(v.re)
    }))
}
