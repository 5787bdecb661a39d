//! Number words to digits, as the `word2number` package (`w2n.word_to_num`) the reference
//! calls on every answer does it: "Five" → "5", "two point five" → "2.5", "033" → "33".

use super::number::python_float_repr;

fn word_value(w: &str) -> Option<u64> {
    const SMALL: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if let Some(k) = SMALL.iter().position(|&s| s == w) {
        return Some(k as u64);
    }
    if let Some(k) = TENS.iter().position(|&s| s == w) {
        return Some(20 + 10 * k as u64);
    }
    match w {
        "hundred" => Some(100),
        "thousand" => Some(1_000),
        "million" => Some(1_000_000),
        "billion" => Some(1_000_000_000),
        _ => None,
    }
}

/// `number_formation` of word2number: at most four words combined positionally.
fn formation(words: &[&str]) -> Option<u64> {
    let n: Vec<u64> = words.iter().map(|w| word_value(w)).collect::<Option<_>>()?;
    Some(match n.len() {
        0 => return None,
        1 => n[0],
        2 if n.contains(&100) => n[0].checked_mul(n[1])?,
        2 => n[0].checked_add(n[1])?,
        3 => n[0].checked_mul(n[1])?.checked_add(n[2])?,
        _ => n[0]
            .checked_mul(n[1])?
            .checked_add(n[2])?
            .checked_add(n[3])?,
    })
}

/// The reference's `convert_word_number`: the text unchanged unless `w2n.word_to_num` accepts it.
pub fn convert_word_number(text: &str) -> String {
    word_to_num(text).unwrap_or_else(|| text.to_string())
}

fn word_to_num(text: &str) -> Option<String> {
    let sentence = text.replace('-', " ").to_lowercase();
    if !sentence.is_empty() && sentence.chars().all(|c| c.is_ascii_digit()) {
        let trimmed = sentence.trim_start_matches('0');
        return Some(if trimmed.is_empty() {
            "0".into()
        } else {
            trimmed.into()
        });
    }
    let mut clean: Vec<&str> = sentence
        .split_whitespace()
        .filter(|w| *w == "point" || word_value(w).is_some())
        .collect();
    if clean.is_empty() {
        return None;
    }
    for w in ["thousand", "million", "billion", "point"] {
        if clean.iter().filter(|&&x| x == w).count() > 1 {
            return None;
        }
    }
    let mut decimals: Vec<&str> = Vec::new();
    if let Some(p) = clean.iter().position(|&w| w == "point") {
        decimals = clean[p + 1..].to_vec();
        clean.truncate(p);
    }
    let index = |w: &str| clean.iter().position(|&x| x == w).map_or(-1, |p| p as i64);
    let (bi, mi, ti) = (index("billion"), index("million"), index("thousand"));
    if (ti > -1 && (ti < mi || ti < bi)) || (mi > -1 && mi < bi) {
        return None;
    }
    let mut total: u64 = 0;
    let slice = |a: i64, b: i64| -> &[&str] { &clean[a.max(0) as usize..b.max(0) as usize] };
    if clean.len() == 1 {
        total = word_value(clean[0])?;
    } else if !clean.is_empty() {
        let last = clean.len() as i64 - 1;
        if bi > -1 {
            total = total.checked_add(formation(slice(0, bi))?.checked_mul(1_000_000_000)?)?;
        }
        if mi > -1 {
            let start = if bi > -1 { bi + 1 } else { 0 };
            total = total.checked_add(formation(slice(start, mi))?.checked_mul(1_000_000)?)?;
        }
        if ti > -1 {
            let start = if mi > -1 {
                mi + 1
            } else if bi > -1 {
                bi + 1
            } else {
                0
            };
            total = total.checked_add(formation(slice(start, ti))?.checked_mul(1_000)?)?;
        }
        let n = clean.len() as i64;
        let hundreds = if ti > -1 && ti != last {
            formation(slice(ti + 1, n))?
        } else if mi > -1 && mi != last {
            formation(slice(mi + 1, n))?
        } else if bi > -1 && bi != last {
            formation(slice(bi + 1, n))?
        } else if ti == -1 && mi == -1 && bi == -1 {
            formation(&clean)?
        } else {
            0
        };
        total = total.checked_add(hundreds)?;
    }
    if decimals.is_empty() {
        return Some(total.to_string());
    }
    let mut digits = String::from("0.");
    for w in &decimals {
        match word_value(w) {
            Some(v) if v < 10 => digits.push(char::from(b'0' + v as u8)),
            // word2number adds an integer 0 when a decimal word is not a digit word.
            _ => return Some(total.to_string()),
        }
    }
    let frac: f64 = digits.parse().ok()?;
    Some(python_float_repr(total as f64 + frac))
}

#[cfg(test)]
mod tests {
    use super::convert_word_number as c;

    #[test]
    fn words_convert_like_word2number() {
        assert_eq!(c("Five"), "5");
        assert_eq!(c("twenty-one"), "21");
        assert_eq!(c("two point five"), "2.5");
        assert_eq!(c("one hundred twenty three"), "123");
        assert_eq!(c("two thousand and five"), "2005");
        assert_eq!(c("033"), "33");
        assert_eq!(c("-5"), "-5");
        assert_eq!(c("x+1"), "x+1");
        assert_eq!(c("\\frac{1}{2}"), "\\frac{1}{2}");
        assert_eq!(c("one one thousand thousand"), "one one thousand thousand");
    }
}
