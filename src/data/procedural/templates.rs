//! The six story templates. Each writes a question with the numbers it draws and a worked solution
//! whose sentences each hold one `a op b = c` step, for a requested number of steps.
//!
//! Numbers a template draws lie in `2..=max_operand` (a few fixed ranges are narrower, said where
//! they are drawn); numbers derived from them (totals, a payment, the dividend of a sharing) may be
//! larger. Every intermediate result is a natural number and every division is exact.

use super::rng::SplitMix64;
use super::words::{FOOD, GOODS, PACKED, PEOPLE, PRODUCTS, UNITS};
use super::worked::{Op, Worked};
use super::Template;

/// A generated problem before the split filter: the texts, the answer and the step count.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub(crate) question: String,
    pub(crate) solution: String,
    pub(crate) answer: u64,
    pub(crate) steps: usize,
}

impl Draft {
    fn new(question: String, worked: Worked, answer: u64) -> Self {
        let (solution, steps) = worked.finish(answer);
        Self {
            question,
            solution,
            answer,
            steps,
        }
    }
}

/// The unit factors, which solutions use without the question stating them.
#[cfg(test)]
pub(crate) fn unit_factors() -> impl Iterator<Item = u64> {
    UNITS.iter().map(|u| u.factor)
}

impl Template {
    /// The step counts this template can write.
    pub(crate) fn step_range(self) -> std::ops::RangeInclusive<usize> {
        match self {
            Template::Remainders => 2..=4,
            _ => 1..=4,
        }
    }

    /// A problem with `steps` steps, or `None` when the drawn numbers do not fit (the caller draws
    /// again). `steps` must lie in [`Template::step_range`] and `max_operand` be at least 5.
    pub(crate) fn draft(
        self,
        rng: &mut SplitMix64,
        steps: usize,
        max_operand: u64,
    ) -> Option<Draft> {
        debug_assert!(self.step_range().contains(&steps));
        let m = max_operand;
        match self {
            Template::Shopping => shopping(rng, steps, m),
            Template::Ages => ages(rng, steps, m),
            Template::Rates => rates(rng, steps, m),
            Template::Sharing => sharing(rng, steps, m),
            Template::UnitConversion => unit_conversion(rng, steps, m),
            Template::Remainders => remainders(rng, steps, m),
        }
    }
}

/// Buying one or two kinds of goods; with an even step count, the change from a round payment.
fn shopping(rng: &mut SplitMix64, steps: usize, m: u64) -> Option<Draft> {
    let p = rng.pick(PEOPLE);
    let (goods1, goods2) = rng.pick_two(GOODS);
    let (n1, price1) = (rng.range(2, m), rng.range(2, m));
    let mut w = Worked::new();
    let mut question = format!("{} buys {n1} {goods1} at {price1} dollars each", p.name);
    let cost1 = w.step(
        &format!("The {goods1} cost "),
        n1,
        Op::Mul,
        price1,
        " dollars.",
    );
    let total = if steps >= 3 {
        let (n2, price2) = (rng.range(2, m), rng.range(2, m));
        question += &format!(" and {n2} {goods2} at {price2} dollars each.");
        let cost2 = w.step(
            &format!("The {goods2} cost "),
            n2,
            Op::Mul,
            price2,
            " dollars.",
        );
        let before = format!("In total {} spends ", p.pronoun);
        w.step(&before, cost1, Op::Add, cost2, " dollars.")
    } else {
        question += ".";
        cost1
    };
    let answer = if matches!(steps, 2 | 4) {
        // A round payment: the next multiple of ten above the total, sometimes ten or twenty more.
        let paid = (total / 10 + 1 + rng.range(0, 2)) * 10;
        question += &format!(
            " {} pays with {paid} dollars. How many dollars of change does {} get?",
            p.pronoun_capital, p.pronoun
        );
        w.step("The change is ", paid, Op::Sub, total, " dollars.")
    } else {
        question += &format!(" How many dollars does {} spend?", p.pronoun);
        total
    };
    Some(Draft::new(question, w, answer))
}

/// One age from another (older or younger), then a multiple of it, then a future age or the sum of
/// all three.
fn ages(rng: &mut SplitMix64, steps: usize, m: u64) -> Option<Draft> {
    let (a, b) = rng.pick_two(PEOPLE);
    let c = loop {
        let c = rng.pick(PEOPLE);
        if c.name != a.name && c.name != b.name {
            break c;
        }
    };
    let mut w = Worked::new();
    let difference = rng.range(2, m);
    let b_is = format!("{} is ", b.name);
    let (mut question, age_a, age_b) = if rng.coin() {
        let age_a = rng.range(2, m);
        let question = format!(
            "{} is {age_a} years old. {} is {difference} years older than {}.",
            a.name, b.name, a.name
        );
        let age_b = w.step(&b_is, age_a, Op::Add, difference, " years old.");
        (question, age_a, age_b)
    } else {
        let age_a = rng.range(2, m) + difference;
        let question = format!(
            "{} is {age_a} years old. {} is {difference} years younger than {}.",
            a.name, b.name, a.name
        );
        let age_b = w.step(&b_is, age_a, Op::Sub, difference, " years old.");
        (question, age_a, age_b)
    };
    if steps == 1 {
        question += &format!(" How old is {}?", b.name);
        return Some(Draft::new(question, w, age_b));
    }
    let times = rng.range(2, m.min(5));
    question += &format!(" {} is {times} times as old as {}.", c.name, b.name);
    let age_c = w.step(
        &format!("{} is ", c.name),
        age_b,
        Op::Mul,
        times,
        " years old.",
    );
    let answer = match steps {
        2 => {
            question += &format!(" How old is {}?", c.name);
            age_c
        }
        3 => {
            let years = rng.range(2, m);
            question += &format!(" How old will {} be in {years} years?", c.name);
            let before = format!("In {years} years {} will be ", c.name);
            w.step(&before, age_c, Op::Add, years, " years old.")
        }
        _ => {
            question += &format!(
                " What is the sum of the ages of {}, {} and {}?",
                a.name, b.name, c.name
            );
            let before = format!("{} and {} are ", a.name, b.name);
            let pair = w.step(&before, age_a, Op::Add, age_b, " years old together.");
            w.step("The sum of the three ages is ", pair, Op::Add, age_c, ".")
        }
    };
    Some(Draft::new(question, w, answer))
}

/// Work at an hourly rate, by one worker or two; with an even step count, some of it is sold.
fn rates(rng: &mut SplitMix64, steps: usize, m: u64) -> Option<Draft> {
    let (a, b) = rng.pick_two(PEOPLE);
    let things = rng.pick(PRODUCTS);
    let (rate1, hours) = (rng.range(2, m), rng.range(2, m));
    let made_things = format!(" {things}.");
    let mut w = Worked::new();
    let (mut question, made, they) = if steps >= 3 {
        let rate2 = rng.range(2, m);
        let question = format!(
            "{} makes {rate1} {things} per hour and {} makes {rate2} {things} per hour. \
             They work for {hours} hours.",
            a.name, b.name
        );
        let made1 = w.step(
            &format!("{} makes ", a.name),
            rate1,
            Op::Mul,
            hours,
            &made_things,
        );
        let made2 = w.step(
            &format!("{} makes ", b.name),
            rate2,
            Op::Mul,
            hours,
            &made_things,
        );
        let made = w.step("Together they make ", made1, Op::Add, made2, &made_things);
        (question, made, true)
    } else {
        let question = format!(
            "{} makes {rate1} {things} per hour for {hours} hours.",
            a.name
        );
        let before = format!("{} makes ", a.pronoun_capital);
        let made = w.step(&before, rate1, Op::Mul, hours, &made_things);
        (question, made, false)
    };
    let answer = if matches!(steps, 2 | 4) {
        let sold = rng.range(2, m.min(made));
        let sells = if they {
            "They sell".to_string()
        } else {
            format!("{} sells", a.pronoun_capital)
        };
        question += &format!(" {sells} {sold} of them. How many {things} are left?");
        w.step(
            "After selling, ",
            made,
            Op::Sub,
            sold,
            &format!(" {things} are left."),
        )
    } else {
        let make = if they {
            "do they make together".to_string()
        } else {
            format!("does {} make", a.pronoun)
        };
        question += &format!(" How many {things} {make}?");
        made
    };
    Some(Draft::new(question, w, answer))
}

/// Equal sharing: of a stated amount, of bags, or of bags plus loose ones; with four steps the
/// friends then eat some of their share.
fn sharing(rng: &mut SplitMix64, steps: usize, m: u64) -> Option<Draft> {
    let p = rng.pick(PEOPLE);
    let things = rng.pick(FOOD);
    let mut w = Worked::new();
    let (mut question, total, friends) = match steps {
        1 => {
            let (friends, share) = (rng.range(2, m), rng.range(2, m));
            let total = friends * share;
            (format!("{} has {total} {things}", p.name), total, friends)
        }
        2 => {
            let (bags, per_bag) = (rng.range(2, m), rng.range(2, m));
            let question = format!(
                "{} has {bags} bags with {per_bag} {things} in each bag",
                p.name
            );
            let total = w.step(
                &format!("{} has ", p.pronoun_capital),
                bags,
                Op::Mul,
                per_bag,
                &format!(" {things}."),
            );
            // bags and per_bag both divide the total, so the list is never empty.
            // `%` rather than `is_multiple_of`, which is newer than the workspace's rust-version.
            #[allow(clippy::manual_is_multiple_of)]
            let divisors: Vec<u64> = (2..=m).filter(|d| total % d == 0).collect();
            (question, total, *rng.pick(&divisors))
        }
        _ => {
            let (bags, per_bag, friends) = (rng.range(2, m), rng.range(2, m), rng.range(2, m));
            // The loose ones make the total a multiple of the number of friends.
            let loose = (friends - bags * per_bag % friends) % friends;
            let loose = if loose < 2 { loose + friends } else { loose };
            let question = format!(
                "{} has {bags} bags with {per_bag} {things} in each bag and {loose} more {things}",
                p.name
            );
            let before = format!("{} has ", p.pronoun_capital);
            let bagged = w.step(
                &before,
                bags,
                Op::Mul,
                per_bag,
                &format!(" {things} in bags."),
            );
            let before = format!("In total {} has ", p.pronoun);
            let total = w.step(&before, bagged, Op::Add, loose, &format!(" {things}."));
            (question, total, friends)
        }
    };
    question += &format!(
        ". {} shares them equally among {friends} friends.",
        p.pronoun_capital
    );
    let share = w.step(
        "Each friend gets ",
        total,
        Op::Div,
        friends,
        &format!(" {things}."),
    );
    let answer = if steps == 4 {
        let eaten = rng.range(1, share.min(m));
        question += &format!(
            " Each friend eats {eaten} of them. How many {things} does each friend have left?"
        );
        w.step(
            "Each friend has ",
            share,
            Op::Sub,
            eaten,
            &format!(" {things} left."),
        )
    } else {
        question += &format!(" How many {things} does each friend get?");
        share
    };
    Some(Draft::new(question, w, answer))
}

/// Converting a measure in big units (and small ones) to small units, alone or with a second one.
fn unit_conversion(rng: &mut SplitMix64, steps: usize, m: u64) -> Option<Draft> {
    let u = rng.pick(UNITS);
    let (big, small, factor) = (u.big, u.small, u.factor);
    let amount = rng.range(2, m);
    let mut w = Worked::new();
    let mut question = format!("A {} {} {amount} {big}", u.noun, u.verb);
    let mut total = w.step(
        &format!("{amount} {big} is "),
        amount,
        Op::Mul,
        factor,
        &format!(" {small}."),
    );
    if steps >= 2 {
        let extra = rng.range(1, (factor - 1).min(m));
        question += &format!(" and {extra} {small}");
        total = w.step(
            &format!("With {extra} more {small} that is "),
            total,
            Op::Add,
            extra,
            &format!(" {small}."),
        );
    }
    question += &format!("{}.", u.tail);
    match steps {
        1 | 2 => question += &format!(" How many {small} is that?"),
        3 => {
            let other = rng.range(2, m);
            question += &format!(
                " Another {} {} {other} {small}{}. How many {small} is that in total?",
                u.noun, u.verb, u.tail
            );
            let before = format!("Together with the other {} that is ", u.noun);
            total = w.step(&before, total, Op::Add, other, &format!(" {small}."));
        }
        _ => {
            let other = rng.range(2, m);
            question += &format!(
                " Another {} {} {other} {big}{}. How many {small} is that in total?",
                u.noun, u.verb, u.tail
            );
            let before = format!("The other {} {} ", u.noun, u.verb);
            let converted = w.step(
                &before,
                other,
                Op::Mul,
                factor,
                &format!(" {small}{}.", u.tail),
            );
            total = w.step(
                "Together that is ",
                total,
                Op::Add,
                converted,
                &format!(" {small}."),
            );
        }
    }
    Some(Draft::new(question, w, total))
}

/// Packing into boxes of a fixed size: what is left over, after a sum of two amounts at four or
/// (sometimes) three steps, and how many more fill one more box at four or (otherwise) three.
fn remainders(rng: &mut SplitMix64, steps: usize, m: u64) -> Option<Draft> {
    let p = rng.pick(PEOPLE);
    let things = rng.pick(PACKED);
    let (gets_more, fill_up) = match steps {
        2 => (false, false),
        3 => {
            let coin = rng.coin();
            (coin, !coin)
        }
        _ => (true, true),
    };
    let mut w = Worked::new();
    let (mut question, count, box_size) = if gets_more {
        let (have, more) = (rng.range(2, m), rng.range(2, m));
        let count = have + more;
        // A box size that leaves some over and fills at least two boxes.
        let sizes: Vec<u64> = (3..=m.min(count / 2)).filter(|k| count % k != 0).collect();
        if sizes.is_empty() {
            return None;
        }
        let box_size = *rng.pick(&sizes);
        let question = format!(
            "{} has {have} {things} and gets {more} more. {} packs them into boxes of {box_size}.",
            p.name, p.pronoun_capital
        );
        w.step(
            &format!("{} has ", p.pronoun_capital),
            have,
            Op::Add,
            more,
            &format!(" {things}."),
        );
        (question, count, box_size)
    } else {
        let box_size = rng.range(3, m);
        let (boxes, left) = (rng.range(2, m), rng.range(1, box_size - 1));
        let count = box_size * boxes + left;
        let question = format!(
            "{} packs {count} {things} into boxes of {box_size}.",
            p.name
        );
        (question, count, box_size)
    };
    let boxes = count / box_size;
    let packed = w.step(
        &format!("{boxes} full boxes hold "),
        box_size,
        Op::Mul,
        boxes,
        &format!(" {things}."),
    );
    let left = w.step(
        "So ",
        count,
        Op::Sub,
        packed,
        &format!(" {things} are left over."),
    );
    let answer = if fill_up {
        question += &format!(
            " How many more {things} does {} need to fill one more box?",
            p.pronoun
        );
        let before = format!("To fill one more box {} needs ", p.pronoun);
        w.step(
            &before,
            box_size,
            Op::Sub,
            left,
            &format!(" more {things}."),
        )
    } else {
        question += &format!(" How many {things} are left over?");
        left
    };
    Some(Draft::new(question, w, answer))
}
