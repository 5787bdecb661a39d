//! Exact rationals on i128 with overflow checks (an overflow makes the caller fall back to f64).

/// Largest |exponent| of an exact power; larger ones are left to the floating-point evaluator.
const MAX_EXPONENT: u128 = 256;

/// A reduced fraction with a positive denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rational {
    /// Numerator.
    pub num: i128,
    /// Denominator (> 0).
    pub den: i128,
}

/// The gcd of the magnitudes, in u128 so that `i128::MIN` (whose magnitude has no i128) is read
/// rather than wrapped by `abs()`.
fn gcd(a: i128, b: i128) -> u128 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Rational {
    /// `num/den` reduced; `None` on a zero denominator or overflow.
    pub fn new(num: i128, den: i128) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let (mut n, mut d) = match i128::try_from(gcd(num, den).max(1)) {
            Ok(g) => (num / g, den / g),
            // A gcd of 2^127 (no i128) needs den = i128::MIN and num 0 or i128::MIN.
            Err(_) => (i128::from(num != 0), 1),
        };
        if d < 0 {
            n = n.checked_neg()?;
            d = d.checked_neg()?;
        }
        Some(Self { num: n, den: d })
    }

    /// An integer.
    pub fn int(n: i128) -> Self {
        Self { num: n, den: 1 }
    }

    /// Parses a plain decimal such as `-12.50` exactly.
    pub fn parse_decimal(s: &str) -> Option<Self> {
        let (neg, body) = match s.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, s),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
            || frac.len() > 30
            || int.len() > 36
        {
            return None;
        }
        let digits = format!("{int}{frac}");
        let n: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let d = 10i128.checked_pow(frac.len() as u32)?;
        Self::new(if neg { -n } else { n }, d)
    }

    /// Sum.
    pub fn add(self, o: Self) -> Option<Self> {
        let n = self
            .num
            .checked_mul(o.den)?
            .checked_add(o.num.checked_mul(self.den)?)?;
        Self::new(n, self.den.checked_mul(o.den)?)
    }

    /// Product.
    pub fn mul(self, o: Self) -> Option<Self> {
        Self::new(self.num.checked_mul(o.num)?, self.den.checked_mul(o.den)?)
    }

    /// Negation.
    pub fn neg(self) -> Option<Self> {
        Some(Self {
            num: self.num.checked_neg()?,
            den: self.den,
        })
    }

    /// Quotient; `None` when dividing by zero.
    pub fn div(self, o: Self) -> Option<Self> {
        if o.num == 0 {
            return None;
        }
        Self::new(self.num.checked_mul(o.den)?, self.den.checked_mul(o.num)?)
    }

    /// Integer power with |exp| ≤ 256; `None` past that or on overflow.
    pub fn pow(self, exp: i128) -> Option<Self> {
        // `unsigned_abs`: `abs()` of i128::MIN wraps to itself in release (and panics in
        // debug), which once made 2^(-2^127) an empty product, i.e. 1.
        let magnitude = exp.unsigned_abs();
        if magnitude > MAX_EXPONENT {
            return None;
        }
        let (mut base, mut left, mut r) = (self, magnitude, Self::int(1));
        while left > 0 {
            if left & 1 == 1 {
                r = r.mul(base)?;
            }
            left >>= 1;
            if left > 0 {
                base = base.mul(base)?;
            }
        }
        if exp < 0 {
            Self::int(1).div(r)
        } else {
            Some(r)
        }
    }

    /// Whether it is an integer.
    pub fn is_integer(self) -> bool {
        self.den == 1
    }

    /// The nearest f64.
    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::Rational as R;

    #[test]
    fn arithmetic_is_exact_and_checked() {
        let a = R::new(1, 3).unwrap();
        assert_eq!(a.add(R::new(1, 6).unwrap()), R::new(1, 2));
        assert_eq!(R::parse_decimal("-12.50"), R::new(-25, 2));
        assert_eq!(R::int(10).pow(40), None);
        assert_eq!(R::int(2).pow(-2), R::new(1, 4));
        assert_eq!(R::int(1).div(R::int(0)), None);
    }

    #[test]
    fn the_i128_minimum_never_wraps() {
        assert_eq!(R::int(2).pow(i128::MIN), None);
        assert_eq!(R::int(1).pow(i128::MIN), None);
        assert_eq!(R::int(2).pow(-i128::MAX), None);
        assert_eq!(R::new(i128::MIN, i128::MIN), R::new(1, 1));
        assert_eq!(R::new(0, i128::MIN), Some(R::int(0)));
        assert_eq!(
            R::new(i128::MIN, 2),
            Some(R {
                num: i128::MIN / 2,
                den: 1
            })
        );
        // i128::MIN / -1 has no i128: the sign flip must fail, not wrap.
        assert_eq!(R::new(i128::MIN, -1), None);
        assert_eq!(R::int(i128::MIN).neg(), None);
        assert_eq!(R::int(-2).pow(127), Some(R::int(i128::MIN)));
        assert_eq!(R::int(-2).pow(128), None);
        assert_eq!(R::int(3).pow(5), Some(R::int(243)));
        assert_eq!(R::new(2, 3).unwrap().pow(-3), R::new(27, 8));
    }
}
