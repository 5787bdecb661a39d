//! The text form decontamination compares: lower-case words with punctuation and whitespace
//! collapsed, so that a question copied with other punctuation, case or spacing still matches.

/// Whether `c` is written without spaces between words (CJK ideographs, kana): each such
/// character counts as a word of its own, so that Chinese questions have n-grams too.
fn is_unspaced_script(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}'     // hiragana, katakana
        | '\u{3400}'..='\u{4DBF}'   // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'   // CJK unified ideographs
        | '\u{F900}'..='\u{FAFF}'   // CJK compatibility ideographs
        | '\u{20000}'..='\u{2FA1F}' // CJK extensions B-F, compatibility supplement
    )
}

/// The words of `text` after normalisation: lower-cased; apostrophes dropped (`Janet’s`, `Janet's`
/// and `Janets` are one word); every other run of characters that are not letters or digits is a
/// separator (so LaTeX `$\frac{1}{2}$` reads as `frac 1 2`); each CJK character is a word.
pub fn normalized_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if is_unspaced_script(c) {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            words.push(c.to_string());
        } else if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if matches!(c, '\'' | '\u{2019}' | '`') {
            // An apostrophe joins, so that changing or dropping it changes no word.
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_punctuation_and_spacing_do_not_count() {
        let a = normalized_words("What is $\\frac{1}{2}$ of 10?  (Answer in   words.)");
        let b = normalized_words("what is \\frac 1 2 of 10 -- answer in words");
        assert_eq!(a, b);
        assert_eq!(a[..5], ["what", "is", "frac", "1", "2"]);
    }

    #[test]
    fn apostrophes_join_rather_than_split() {
        let words = |s| normalized_words(s);
        assert_eq!(words("Janet’s ducks"), ["janets", "ducks"]);
        assert_eq!(words("Janet's ducks"), words("Janets ducks"));
    }

    #[test]
    fn each_chinese_character_is_a_word() {
        assert_eq!(
            normalized_words("小明有3个苹果。Tom"),
            ["小", "明", "有", "3", "个", "苹", "果", "tom"]
        );
    }

    #[test]
    fn no_words_in_punctuation() {
        assert!(normalized_words(" ?!$$ {} ").is_empty());
    }
}
