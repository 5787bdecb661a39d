//! A worked solution under construction: one sentence per arithmetic step, each with its equation
//! written out as `a op b = c`, ending in `The answer is \boxed{c}.`

/// One of the four operations a step may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    /// Exact division: the templates only divide multiples.
    Div,
}

impl Op {
    /// The symbol written in solutions.
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
        }
    }

    /// The operation whose symbol is `s`.
    #[cfg(test)]
    pub(crate) fn from_symbol(s: &str) -> Option<Op> {
        match s {
            "+" => Some(Op::Add),
            "-" => Some(Op::Sub),
            "*" => Some(Op::Mul),
            "/" => Some(Op::Div),
            _ => None,
        }
    }

    /// `a op b`, or `None` when it leaves the natural numbers (a negative difference, an inexact
    /// or by-zero division, an overflow).
    // `%` rather than `is_multiple_of`, which is newer than the workspace's rust-version (1.85).
    #[allow(clippy::manual_is_multiple_of)]
    pub(crate) fn apply(self, a: u64, b: u64) -> Option<u64> {
        match self {
            Op::Add => a.checked_add(b),
            Op::Sub => a.checked_sub(b),
            Op::Mul => a.checked_mul(b),
            Op::Div => (b != 0 && a % b == 0).then(|| a / b),
        }
    }
}

/// The sentences of a solution and how many steps they hold.
#[derive(Debug, Default)]
pub(crate) struct Worked {
    sentences: Vec<String>,
    steps: usize,
}

impl Worked {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends the sentence `{before}{a} {op} {b} = {c}{after}` and returns `c`.
    ///
    /// The templates choose their numbers so that every step stays in the natural numbers; a
    /// step that does not is a bug in a template, not bad input.
    pub(crate) fn step(&mut self, before: &str, a: u64, op: Op, b: u64, after: &str) -> u64 {
        let c = op.apply(a, b).unwrap_or_else(|| {
            panic!(
                "template bug: {a} {} {b} is not a natural number",
                op.symbol()
            )
        });
        self.sentences
            .push(format!("{before}{a} {} {b} = {c}{after}", op.symbol()));
        self.steps += 1;
        c
    }

    /// The solution text, ending in `The answer is \boxed{answer}.`, and its number of steps.
    pub(crate) fn finish(mut self, answer: u64) -> (String, usize) {
        self.sentences
            .push(format!("The answer is \\boxed{{{answer}}}."));
        (self.sentences.join(" "), self.steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_written_and_counted() {
        let mut w = Worked::new();
        let t = w.step("The pens cost ", 3, Op::Mul, 4, " dollars.");
        let c = w.step("The change is ", 20, Op::Sub, t, " dollars.");
        let (text, steps) = w.finish(c);
        assert_eq!(
            text,
            "The pens cost 3 * 4 = 12 dollars. The change is 20 - 12 = 8 dollars. \
             The answer is \\boxed{8}."
        );
        assert_eq!(steps, 2);
    }

    #[test]
    fn apply_refuses_what_is_not_a_natural_number() {
        assert_eq!(Op::Sub.apply(3, 4), None);
        assert_eq!(Op::Div.apply(7, 2), None);
        assert_eq!(Op::Div.apply(7, 0), None);
        assert_eq!(Op::Div.apply(8, 2), Some(4));
        assert_eq!(Op::Add.apply(u64::MAX, 1), None);
    }
}
