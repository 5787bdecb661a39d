//! Numbers as the reference reads them: Python's `float()`, its `isclose` and `repr`.

/// Python's `float(s)`: surrounding whitespace, a sign, `_` between digits, `inf`/`nan` words.
pub fn python_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    let lower = t.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if lower.len() - unsigned.len() > 1 {
        return None;
    }
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        return lower.parse::<f64>().ok();
    }
    let bytes = t.as_bytes();
    for (k, &b) in bytes.iter().enumerate() {
        let ok = b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-');
        let underscore_between_digits = b == b'_'
            && k > 0
            && k + 1 < bytes.len()
            && bytes[k - 1].is_ascii_digit()
            && bytes[k + 1].is_ascii_digit();
        if !ok && !underscore_between_digits {
            return None;
        }
    }
    let cleaned: String = t.chars().filter(|&c| c != '_').collect();
    // Rust accepts "e5"-less forms Python also accepts; both reject "1e", "." and "+-1".
    cleaned
        .parse::<f64>()
        .ok()
        .filter(|_| cleaned.chars().any(|c| c.is_ascii_digit()))
}

/// The reference's `parse_digits`: commas deleted, then `float()`, else a trailing `%`/`\%`
/// read as hundredths.
pub fn parse_digits(s: &str) -> Option<f64> {
    let no_commas: String = s.chars().filter(|&c| c != ',').collect();
    if let Some(v) = python_float(&no_commas) {
        return Some(v);
    }
    let mut t = no_commas.strip_suffix('%')?;
    if let Some(u) = t.strip_suffix('\\') {
        t = u;
    }
    python_float(t).map(|v| v / 100.0)
}

/// Python's `math.isclose(a, b, rel_tol=rel)` (absolute tolerance 0).
pub fn is_close(a: f64, b: f64, rel: f64) -> bool {
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let diff = (a - b).abs();
    diff <= rel * b.abs() || diff <= rel * a.abs()
}

/// Python's `repr(float)`: shortest round-trip digits, `.0` on integral values, exponent form
/// outside [1e-4, 1e16).
pub fn python_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{v:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        return format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let s = format!("{v}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_parse_like_python() {
        assert_eq!(python_float(" 1_000.5 "), Some(1000.5));
        assert_eq!(python_float("1e-3"), Some(0.001));
        assert_eq!(python_float(".5"), Some(0.5));
        assert_eq!(python_float("5."), Some(5.0));
        assert_eq!(python_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(python_float("1__0"), None);
        assert_eq!(python_float("_1"), None);
        assert_eq!(python_float("e"), None);
        assert_eq!(python_float("1/2"), None);
        assert_eq!(parse_digits("1,2"), Some(12.0));
        assert_eq!(parse_digits("50\\%"), Some(0.5));
    }

    #[test]
    fn isclose_matches_python() {
        assert!(is_close(10001.0, 10000.0, 1e-4));
        assert!(!is_close(10002.0, 10000.0, 1e-4));
        assert!(!is_close(0.0, 1e-9, 1e-4));
    }

    #[test]
    fn repr_matches_python() {
        assert_eq!(python_float_repr(5.0), "5.0");
        assert_eq!(python_float_repr(2.05), "2.05");
        assert_eq!(python_float_repr(1e16), "1e+16");
        assert_eq!(python_float_repr(1.5e-5), "1.5e-05");
    }
}
