//! The reference's unit-word deletion: every word of its list (taken from MathQA, plus each with
//! an "s") is deleted where it stands between non-word characters, single letters included. This
//! is the source of the `x+a` = `x+c` quirk; the strict profile does not call it.

/// The unit words of the reference, in its order (the order matters: deletions cascade).
const UNIT_WORDS: &[&str] = &[
    "east",
    "degree",
    "mph",
    "kmph",
    "ft",
    "m sqaure",
    " m east",
    "sq m",
    "deg",
    "mile",
    "q .",
    "monkey",
    "prime",
    "ratio",
    "profit of rs",
    "rd",
    "o",
    "gm",
    "p . m",
    "lb",
    "tile",
    "per",
    "dm",
    "lt",
    "gain",
    "ab",
    "way",
    "west",
    "a .",
    "b .",
    "c .",
    "d .",
    "e .",
    "f .",
    "g .",
    "h .",
    "t",
    "a",
    "h",
    "no change",
    "men",
    "soldier",
    "pie",
    "bc",
    "excess",
    "st",
    "inches",
    "noon",
    "percent",
    "by",
    "gal",
    "kmh",
    "c",
    "acre",
    "rise",
    "a . m",
    "th",
    "π r 2",
    "sq",
    "mark",
    "l",
    "toy",
    "coin",
    "sq . m",
    "gallon",
    "° f",
    "profit",
    "minw",
    "yr",
    "women",
    "feet",
    "am",
    "pm",
    "hr",
    "cu cm",
    "square",
    "v â € ™",
    "are",
    "rupee",
    "rounds",
    "cubic",
    "cc",
    "mtr",
    "s",
    "ohm",
    "number",
    "kmph",
    "day",
    "hour",
    "minute",
    "min",
    "second",
    "man",
    "woman",
    "sec",
    "cube",
    "mt",
    "sq inch",
    "mp",
    "∏ cm ³",
    "hectare",
    "more",
    "sec",
    "unit",
    "cu . m",
    "cm 2",
    "rs .",
    "rs",
    "kg",
    "g",
    "month",
    "km",
    "m",
    "cm",
    "mm",
    "apple",
    "liter",
    "loss",
    "yard",
    "pure",
    "year",
    "increase",
    "decrease",
    "d",
    "less",
    "Surface",
    "litre",
    "pi sq m",
    "s .",
    "metre",
    "meter",
    "inch",
];

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `pattern` (where `.` is any character but a newline) matches `s` at `at`.
fn matches_at(s: &[char], at: usize, pattern: &[char]) -> bool {
    at + pattern.len() <= s.len()
        && pattern
            .iter()
            .zip(&s[at..])
            .all(|(&p, &c)| if p == '.' { c != '\n' } else { p == c })
}

/// The first index at or after `from` where `unit` matches.
fn next_occurrence(s: &[char], from: usize, unit: &[char]) -> Option<usize> {
    let first = *unit.first()?;
    let mut k = from;
    while k < s.len() {
        let offset = s[k..]
            .iter()
            .position(|&c| first == '.' && c != '\n' || c == first)?;
        k += offset;
        if matches_at(s, k, unit) {
            return Some(k);
        }
        k += 1;
    }
    None
}

/// `re.sub(r"(^|\W)" + unit + r"($|\W)", r"\1\2", s)` for one unit.
fn delete_unit(s: &[char], unit: &[char]) -> Vec<char> {
    let n = s.len();
    let mut out = Vec::with_capacity(n);
    let mut pos = 0;
    while pos <= n {
        let suffix_end = |end: usize| -> Option<usize> {
            if end == n {
                Some(end)
            } else if !is_word(s[end]) {
                Some(end + 1)
            } else {
                None
            }
        };
        let mut matched = None;
        if pos == 0 && matches_at(s, 0, unit) {
            matched = suffix_end(unit.len()).map(|e| (0, unit.len(), e));
        }
        if matched.is_none() && pos < n && !is_word(s[pos]) && matches_at(s, pos + 1, unit) {
            matched = suffix_end(pos + 1 + unit.len()).map(|e| (pos + 1, pos + 1 + unit.len(), e));
        }
        match matched {
            Some((unit_start, unit_end, end)) => {
                out.extend_from_slice(&s[pos..unit_start]);
                out.extend_from_slice(&s[unit_end..end]);
                pos = end;
                if end == n {
                    break;
                }
            }
            None => {
                // A match needs the unit to start at pos + 1: copy up to the position before
                // its next occurrence in one step rather than testing every position.
                let next = next_occurrence(s, pos + 2, unit).map_or(n, |j| j - 1);
                out.extend_from_slice(&s[pos.min(n)..next.max(pos + 1).min(n)]);
                pos = next.max(pos + 1);
            }
        }
    }
    out
}

/// A unit pattern: its text (for a fast substring pre-check) and its characters.
struct UnitPattern {
    text: String,
    chars: Vec<char>,
}

/// Two passes over the unit list, each deletion kept unless it empties the string.
pub fn strip_unit_words(s: &str) -> String {
    static UNITS: std::sync::OnceLock<Vec<UnitPattern>> = std::sync::OnceLock::new();
    let units = UNITS.get_or_init(|| {
        UNIT_WORDS
            .iter()
            .map(|u| u.to_string())
            .chain(UNIT_WORDS.iter().map(|u| format!("{u}s")))
            .map(|text| UnitPattern {
                chars: text.chars().collect(),
                text,
            })
            .collect()
    });
    let mut cur: Vec<char> = s.chars().collect();
    let mut text: String = s.to_string();
    for _ in 0..2 {
        for unit in units {
            // Most units occur nowhere: `str::contains` rules them out in optimised std code
            // (a 4 KiB answer took half a second in a debug build with a per-position scan).
            // A `.` in a pattern matches any character, so those keep the scan.
            let present = if unit.text.contains('.') {
                cur.len() >= unit.chars.len()
                    && (0..=cur.len() - unit.chars.len()).any(|k| matches_at(&cur, k, &unit.chars))
            } else {
                text.contains(unit.text.as_str())
            };
            if !present {
                continue;
            }
            let next = delete_unit(&cur, &unit.chars);
            if !next.is_empty() && next != cur {
                cur = next;
                text = cur.iter().collect();
            }
        }
    }
    cur.into_iter().collect()
}

/// Unit words the strict profile also drops after a number (the reference keeps them).
const EXTRA_STRICT_UNITS: &[&str] = &[
    "dollar",
    "cent",
    "euro",
    "yuan",
    "centimeter",
    "millimeter",
    "kilometer",
    "gram",
    "kilogram",
    "ounce",
    "pound",
    "mile",
    "hour",
    "people",
    "student",
    "page",
    "book",
];

/// Strict unit deletion: one trailing word of two or more letters from the unit lists, only
/// after a number or a closing brace (`59 meters` → `59`, `x+a` unchanged).
pub fn strip_trailing_unit_word(s: &str) -> String {
    let t = s.trim_end();
    let Some((rest, word)) = t.rsplit_once(char::is_whitespace) else {
        return s.to_string();
    };
    let is_unit = |w: &str| {
        w.len() >= 2
            && w.chars().all(|c| c.is_ascii_alphabetic())
            && UNIT_WORDS
                .iter()
                .chain(EXTRA_STRICT_UNITS)
                .any(|u| *u == w || format!("{u}s") == w || format!("{u}es") == w)
    };
    let rest = rest.trim_end();
    if is_unit(word) && rest.ends_with(|c: char| c.is_ascii_digit() || c == '}') {
        rest.to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::strip_unit_words as s;
    use super::{delete_unit, is_word, matches_at};
    use proptest::prelude::*;

    /// The deletion tested at every position, as it was before the skip to the next occurrence.
    fn delete_unit_naive(s: &[char], unit: &[char]) -> Vec<char> {
        let n = s.len();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos <= n {
            let suffix_end = |end: usize| {
                if end == n {
                    Some(end)
                } else {
                    (!is_word(s[end])).then_some(end + 1)
                }
            };
            let mut matched = None;
            if pos == 0 && matches_at(s, 0, unit) {
                matched = suffix_end(unit.len()).map(|e| (0, unit.len(), e));
            }
            if matched.is_none() && pos < n && !is_word(s[pos]) && matches_at(s, pos + 1, unit) {
                matched =
                    suffix_end(pos + 1 + unit.len()).map(|e| (pos + 1, pos + 1 + unit.len(), e));
            }
            match matched {
                Some((start, unit_end, end)) => {
                    out.extend_from_slice(&s[pos..start]);
                    out.extend_from_slice(&s[unit_end..end]);
                    pos = end;
                    if end == n {
                        break;
                    }
                }
                None => {
                    if pos < n {
                        out.push(s[pos]);
                    }
                    pos += 1;
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn skipping_to_occurrences_deletes_the_same(
            text in "[ab .\n]{0,24}",
            unit in prop::sample::select(vec!["a", "ab", "a .", "b", ". a", "aa"]),
        ) {
            let (t, u): (Vec<char>, Vec<char>) = (text.chars().collect(), unit.chars().collect());
            prop_assert_eq!(delete_unit(&t, &u), delete_unit_naive(&t, &u));
        }
    }

    #[test]
    fn deletes_like_the_reference() {
        assert_eq!(s("59 meters"), "59 ");
        assert_eq!(s("x+a"), "x+");
        assert_eq!(s("(d)"), "()");
        assert_eq!(s("a a"), " ");
        assert_eq!(s("10 cm"), "10 ");
        assert_eq!(s("m"), "m");
        assert_eq!(s("12"), "12");
    }
}
