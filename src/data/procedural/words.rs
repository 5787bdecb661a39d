//! The people, things and units that the templates' stories are about.

/// A named person and the pronoun that refers to them.
pub(crate) struct Person {
    pub(crate) name: &'static str,
    pub(crate) pronoun: &'static str,
    pub(crate) pronoun_capital: &'static str,
}

const fn he(name: &'static str) -> Person {
    Person {
        name,
        pronoun: "he",
        pronoun_capital: "He",
    }
}

const fn she(name: &'static str) -> Person {
    Person {
        name,
        pronoun: "she",
        pronoun_capital: "She",
    }
}

pub(crate) const PEOPLE: &[Person] = &[
    he("Tom"),
    she("Ann"),
    he("Sam"),
    she("Mia"),
    he("Ben"),
    she("Eva"),
    he("Leo"),
    she("Zoe"),
    he("Max"),
    she("Lily"),
    he("Jack"),
    she("Emma"),
];

/// Goods bought in shopping problems.
pub(crate) const GOODS: &[&str] = &[
    "pens", "books", "apples", "toys", "cups", "balls", "cards", "cakes",
];
/// Things made in rate problems.
pub(crate) const PRODUCTS: &[&str] = &["toys", "cakes", "boxes", "shirts", "cups", "kites"];
/// Things shared in sharing problems (the story has the friends eat some).
pub(crate) const FOOD: &[&str] = &["apples", "cookies", "candies", "grapes", "nuts", "cherries"];
/// Things packed in remainder problems.
pub(crate) const PACKED: &[&str] = &["eggs", "pencils", "marbles", "stickers", "cookies", "beads"];

/// A pair of units, `factor` small ones to a big one, and the thing measured in them.
pub(crate) struct UnitPair {
    pub(crate) big: &'static str,
    pub(crate) small: &'static str,
    pub(crate) factor: u64,
    pub(crate) noun: &'static str,
    pub(crate) verb: &'static str,
    /// Words after the amount (" long"), or nothing.
    pub(crate) tail: &'static str,
}

const fn unit(
    big: &'static str,
    small: &'static str,
    factor: u64,
    noun: &'static str,
    verb: &'static str,
    tail: &'static str,
) -> UnitPair {
    UnitPair {
        big,
        small,
        factor,
        noun,
        verb,
        tail,
    }
}

/// (big, small, factor, noun, verb, tail): "A rope is 3 meters long."
#[rustfmt::skip]
pub(crate) const UNITS: &[UnitPair] = &[
    unit("hours", "minutes", 60, "movie", "lasts", ""),
    unit("minutes", "seconds", 60, "song", "lasts", ""),
    unit("meters", "centimeters", 100, "rope", "is", " long"),
    unit("days", "hours", 24, "trip", "lasts", ""),
    unit("weeks", "days", 7, "holiday", "lasts", ""),
    unit("feet", "inches", 12, "table", "is", " long"),
    unit("dollars", "cents", 100, "book", "costs", ""),
];
