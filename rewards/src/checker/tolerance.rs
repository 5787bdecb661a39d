//! How close a value known only in floating point must be to the gold in the strict profile.
//!
//! A rational answer is compared exactly (see `strict.rs`). An answer with roots, logs, trig or
//! π has only an f64 value, which errs by about 1e-15 relative: compared with an *exact* gold
//! (written without a decimal point) it must agree within [`EXACT_GOLD_RELATIVE_TOLERANCE`], and
//! only when its inputs are small exact numbers, since f64 cannot tell a crafted near-miss
//! (`\cos(10^{-5})` for 1, `2\cos(1.0471975512)` for 1, `e^{\pi\sqrt{163}}` for an integer)
//! from the value itself. A gold written as a decimal may be rounded, so it keeps the looser
//! [`DECIMAL_GOLD_RELATIVE_TOLERANCE`] (`\frac{\pi}{2}` = `1.5708`).

use super::budget::{Budget, BudgetError};
use super::expr::{eval_rational, Expr, C};
use super::rational::Rational;

/// Relative tolerance between an answer's floating-point value and an exact gold.
pub const EXACT_GOLD_RELATIVE_TOLERANCE: f64 = 1e-9;
/// Absolute tolerance floor for an exact gold at or near 0, where a relative one means nothing
/// (`\sin\pi` evaluates to 1.2e-16).
pub const EXACT_GOLD_ABSOLUTE_TOLERANCE: f64 = 1e-12;
/// Largest |gold| the tolerance applies to; past it an answer must be exactly rational.
pub const EXACT_GOLD_MAGNITUDE_LIMIT: f64 = 1e6;
/// Relative tolerance for a gold written as a decimal, which may be rounded.
pub const DECIMAL_GOLD_RELATIVE_TOLERANCE: f64 = 1e-4;

/// Fewest significant digits of a decimal answer accepted as a rounding of a fraction whose
/// expansion does not terminate (`0.7407407407` for `\frac{20}{27}`).
pub const MIN_ROUNDED_SIGNIFICANT_DIGITS: usize = 6;

/// Largest numerator of an exact input in an answer that may be compared with a tolerance.
const PLAIN_MAX_NUMERATOR: u128 = 1_000_000_000;
/// Largest denominator of such an input (`0.0001`, `\frac{1}{10^4}`; not 1.0471975512).
const PLAIN_MAX_DENOMINATOR: i128 = 10_000;
/// Smallest non-zero magnitude of such an input, as a fraction 1/this.
const PLAIN_MIN_MAGNITUDE_INVERSE: u128 = 1_000;

/// Whether the gold text has a decimal literal (`1.5708`, `.5`), i.e. may be a rounded value.
pub fn written_as_decimal(gold: &str) -> bool {
    let b = gold.as_bytes();
    b.iter().enumerate().any(|(k, &c)| {
        c == b'.'
            && (b.get(k + 1).is_some_and(u8::is_ascii_digit)
                || (k > 0 && b[k - 1].is_ascii_digit()))
    })
}

/// Whether `pred` is a plain decimal of at least [`MIN_ROUNDED_SIGNIFICANT_DIGITS`] significant
/// digits that is `gold` correctly rounded (within half a unit of its last place), `gold` being
/// a fraction no decimal can write exactly. A gold that a decimal can write (`\frac{3}{8}`) must
/// be written exactly: `0.37` or `0.376` for it is a different value.
pub fn is_correct_rounding(pred: &str, gold: Rational) -> bool {
    let digits = pred.trim_start_matches('-');
    let Some((int, frac)) = digits.split_once('.') else {
        return false;
    };
    if frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return false;
    }
    let significant = format!("{int}{frac}").trim_start_matches('0').len();
    if significant < MIN_ROUNDED_SIGNIFICANT_DIGITS || terminates(gold) {
        return false;
    }
    let (Some(value), Ok(places)) = (Rational::parse_decimal(pred), u32::try_from(frac.len()))
    else {
        return false;
    };
    // |value - gold| * 2 * 10^places <= 1, exactly; an overflow means "no".
    let bound = || {
        let scale = Rational::int(2).mul(Rational::int(10).pow(i128::from(places))?)?;
        let diff = value.add(gold.neg()?)?;
        let scaled = diff.mul(scale)?;
        Some(scaled.num.unsigned_abs() <= scaled.den.unsigned_abs())
    };
    bound().unwrap_or(false)
}

/// Whether the decimal expansion of `r` terminates (its denominator is 2^a 5^b).
fn terminates(r: Rational) -> bool {
    let mut d = r.den;
    for p in [2, 5] {
        while d % p == 0 {
            d /= p;
        }
    }
    d == 1
}

/// A rational an answer may be built from when it is compared with a tolerance: zero, or at
/// least 1e-3 in magnitude with a numerator up to 1e9 and a denominator up to 1e4.
fn is_plain(r: Rational) -> bool {
    let n = r.num.unsigned_abs();
    r.num == 0
        || (n <= PLAIN_MAX_NUMERATOR
            && r.den <= PLAIN_MAX_DENOMINATOR
            && n.saturating_mul(PLAIN_MIN_MAGNITUDE_INVERSE) >= r.den.unsigned_abs())
}

/// Whether every maximal exactly-rational part of `e` is plain (see [`is_plain`]) and no
/// literal is a float: then f64 evaluation error, not the answer, explains a tiny difference.
pub fn has_plain_inputs(e: &Expr, budget: &mut Budget) -> Result<bool, BudgetError> {
    if let Some(r) = eval_rational(e, budget)? {
        return Ok(is_plain(r));
    }
    Ok(match e {
        Expr::Float(_) | Expr::Num(_) => false,
        Expr::Sym(_) | Expr::Const(_) => true,
        Expr::Add(xs) | Expr::Mul(xs) | Expr::Func(_, xs) | Expr::Tuple(xs) | Expr::Set(xs) => {
            for x in xs {
                if !has_plain_inputs(x, budget)? {
                    return Ok(false);
                }
            }
            true
        }
        Expr::Div(a, b) | Expr::Pow(a, b) | Expr::Rel(_, a, b) => {
            has_plain_inputs(a, budget)? && has_plain_inputs(b, budget)?
        }
        Expr::Neg(a) => has_plain_inputs(a, budget)?,
    })
}

/// Whether the answer's value `a` (of expression `pred`) matches the gold's value `b`.
pub fn values_match(
    pred: &Expr,
    a: C,
    b: C,
    exact_gold: bool,
    budget: &mut Budget,
) -> Result<bool, BudgetError> {
    let distance = (a.re - b.re).hypot(a.im - b.im);
    let (a_size, b_size) = (a.re.hypot(a.im), b.re.hypot(b.im));
    if !exact_gold {
        return Ok(distance <= DECIMAL_GOLD_RELATIVE_TOLERANCE * a_size.max(b_size));
    }
    if b_size > EXACT_GOLD_MAGNITUDE_LIMIT {
        return Ok(false);
    }
    let tolerance = (EXACT_GOLD_RELATIVE_TOLERANCE * b_size).max(EXACT_GOLD_ABSOLUTE_TOLERANCE);
    Ok(distance <= tolerance && has_plain_inputs(pred, budget)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_golds_are_told_from_exact_ones() {
        assert!(written_as_decimal("1.5708"));
        assert!(written_as_decimal(".5"));
        assert!(written_as_decimal("3."));
        assert!(!written_as_decimal("\\frac{\\sqrt{3}}{2}"));
        assert!(!written_as_decimal("1,2,3"));
        assert!(!written_as_decimal("\\ldots"));
    }

    #[test]
    fn roundings_count_only_for_fractions_no_decimal_writes() {
        let r = |n, d| Rational::new(n, d).unwrap();
        assert!(is_correct_rounding("0.7407407407", r(20, 27)));
        assert!(is_correct_rounding("-0.333333", r(-1, 3)));
        assert!(is_correct_rounding("2.33333", r(7, 3)));
        assert!(!is_correct_rounding("2.33334", r(7, 3)));
        assert!(
            !is_correct_rounding("0.33333", r(1, 3)),
            "five significant digits"
        );
        assert!(!is_correct_rounding("0.333333", r(-1, 3)), "sign");
        assert!(!is_correct_rounding("0.3750001", r(3, 8)), "3/8 terminates");
        assert!(!is_correct_rounding("1/3", r(1, 3)));
        assert!(!is_correct_rounding("0.333333e0", r(1, 3)));
    }

    #[test]
    fn plain_inputs_are_small_and_exact() {
        let r = |n, d| Rational::new(n, d).unwrap();
        assert!(is_plain(r(0, 1)));
        assert!(is_plain(r(163, 1)));
        assert!(is_plain(r(1, 1000)));
        assert!(!is_plain(r(1, 100_000)));
        assert!(!is_plain(r(10_471_975_512, 10_000_000_000)));
        assert!(!is_plain(r(i128::MIN, 1)));
        assert!(!is_plain(r(10_000_000_001, 1)));
    }
}
