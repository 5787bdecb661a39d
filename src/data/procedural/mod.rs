//! The procedural grade-school math task of the embedded default: word problems of one to four
//! arithmetic steps over six story templates, each with a gold answer and a worked solution whose
//! every step is written out as `a op b = c` and which ends in `The answer is \boxed{N}.`
//!
//! ```text
//! Tom buys 3 pens at 4 dollars each. He pays with 20 dollars. How many dollars of change does he get?
//! The pens cost 3 * 4 = 12 dollars. The change is 20 - 12 = 8 dollars. The answer is \boxed{8}.
//! ```
//!
//! Problems are a pure function of [`TaskConfig`]: each split draws from its own random stream,
//! and a question is only emitted for the split its text hashes to, so that no question text is
//! shared between the train, held-out and test splits, whatever their sizes.

mod rng;
mod templates;
mod words;
mod worked;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};
use rng::{mix64, stable_hash, SplitMix64};

/// A story template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// Buying goods at a unit price, and the change from a payment.
    Shopping,
    /// Ages relative to one another, in the future, summed.
    Ages,
    /// Work at an hourly rate, by one or two workers, some of it sold.
    Rates,
    /// Equal sharing among friends (exact division).
    Sharing,
    /// Big units (and small ones) to small units: hours to minutes, meters to centimeters, ...
    UnitConversion,
    /// Packing into boxes: what is left over, how many more fill one more box (two steps or more).
    Remainders,
}

impl Template {
    /// Every template, in a fixed order.
    pub const ALL: [Template; 6] = [
        Template::Shopping,
        Template::Ages,
        Template::Rates,
        Template::Sharing,
        Template::UnitConversion,
        Template::Remainders,
    ];
}

/// A split of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training questions (SFT and RL).
    Train,
    /// Questions for evaluation during training (early stopping, accuracy curves).
    HeldOut,
    /// Questions for the final evaluation only.
    Test,
}

impl Split {
    /// Every split, in a fixed order.
    pub const ALL: [Split; 3] = [Split::Train, Split::HeldOut, Split::Test];

    /// The salt of this split's random stream.
    fn stream_salt(self) -> u64 {
        match self {
            Split::Train => 0x7452_4149_4E00_0001,
            Split::HeldOut => 0x4845_4C44_4F55_5402,
            Split::Test => 0x5445_5354_0000_0003,
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::HeldOut => "held_out",
            Split::Test => "test",
        })
    }
}

/// Settings of the task: the seed, the difficulty and the split proportions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// Seed of every split's random stream: the same seed gives the same problems.
    pub seed: u64,
    /// Fewest arithmetic steps in a solution (1 to 4).
    pub min_steps: usize,
    /// Most arithmetic steps in a solution (`min_steps` to 4).
    pub max_steps: usize,
    /// Largest number a template draws (5 to 10,000); derived numbers such as totals are larger.
    pub max_operand: u64,
    /// The templates to draw from; each problem picks a (template, step count) pair uniformly
    /// among those the templates can write within the step range.
    pub templates: Vec<Template>,
    /// Share of the question-hash space that belongs to the held-out split.
    pub held_out_fraction: f64,
    /// Share of the question-hash space that belongs to the test split; the rest is training.
    pub test_fraction: f64,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            min_steps: 1,
            max_steps: 4,
            max_operand: 12,
            templates: Template::ALL.to_vec(),
            held_out_fraction: 0.1,
            test_fraction: 0.1,
        }
    }
}

/// One problem: the question, its gold answer and a worked solution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The word problem.
    pub question: String,
    /// The gold answer, a non-negative integer written in decimal.
    pub answer: String,
    /// The worked solution, one sentence per step, ending in `The answer is \boxed{answer}.`
    pub solution: String,
    /// Number of arithmetic steps in the solution.
    pub steps: usize,
    /// The story template it came from.
    pub template: Template,
}

/// Number of buckets the question hash falls into; the split fractions are counted in them.
const HASH_BUCKETS: u64 = 10_000;

/// The task: a validated [`TaskConfig`] from which each split's problems are drawn.
#[derive(Debug, Clone)]
pub struct ProceduralTask {
    config: TaskConfig,
    /// The (template, step count) pairs that problems are drawn from.
    kinds: Vec<(Template, usize)>,
    /// Buckets `0..train_buckets` are training, then held-out up to `test_start`, then test.
    train_buckets: u64,
    test_start: u64,
}

impl ProceduralTask {
    /// A task with `config`, or an error naming the setting that is out of range.
    pub fn new(config: TaskConfig) -> Result<Self> {
        let invalid = |field: &str, message: String| {
            Err(Error::Input(format!("TaskConfig.{field}: {message}")))
        };
        if !(1..=4).contains(&config.min_steps) {
            return invalid("min_steps", format!("{} is not in 1..=4", config.min_steps));
        }
        if !(config.min_steps..=4).contains(&config.max_steps) {
            return invalid(
                "max_steps",
                format!(
                    "{} is not in min_steps..=4 = {}..=4",
                    config.max_steps, config.min_steps
                ),
            );
        }
        if !(5..=10_000).contains(&config.max_operand) {
            return invalid(
                "max_operand",
                format!("{} is not in 5..=10000", config.max_operand),
            );
        }
        for (field, fraction) in [
            ("held_out_fraction", config.held_out_fraction),
            ("test_fraction", config.test_fraction),
        ] {
            if !(fraction * HASH_BUCKETS as f64 >= 1.0 && fraction < 1.0) {
                return invalid(field, format!("{fraction} is not in [0.0001, 1)"));
            }
        }
        let evaluation = config.held_out_fraction + config.test_fraction;
        if (1.0 - evaluation) * (HASH_BUCKETS as f64) < 1.0 {
            return invalid(
                "test_fraction",
                format!(
                    "held_out_fraction + test_fraction = {evaluation} leaves no training questions"
                ),
            );
        }
        let kinds: Vec<(Template, usize)> = config
            .templates
            .iter()
            .flat_map(|&t| t.step_range().map(move |s| (t, s)))
            .filter(|&(_, s)| (config.min_steps..=config.max_steps).contains(&s))
            .collect();
        if kinds.is_empty() {
            return invalid(
                "templates",
                format!(
                    "none of {:?} writes {}..={} steps",
                    config.templates, config.min_steps, config.max_steps
                ),
            );
        }
        let held_out = (config.held_out_fraction * HASH_BUCKETS as f64).round() as u64;
        let test = (config.test_fraction * HASH_BUCKETS as f64).round() as u64;
        let train_buckets = HASH_BUCKETS - held_out - test;
        Ok(Self {
            kinds,
            train_buckets,
            test_start: train_buckets + held_out,
            config,
        })
    }

    /// The settings of this task.
    pub fn config(&self) -> &TaskConfig {
        &self.config
    }

    /// The split a question text belongs to, by a stable hash of its bytes.
    pub fn split_of(&self, question: &str) -> Split {
        let bucket = stable_hash(question.as_bytes()) % HASH_BUCKETS;
        if bucket < self.train_buckets {
            Split::Train
        } else if bucket < self.test_start {
            Split::HeldOut
        } else {
            Split::Test
        }
    }

    /// The endless, deterministic stream of `split`'s problems; take as many as needed. Questions
    /// may repeat within a split (rarely, with the default difficulty), never across splits.
    pub fn problems(&self, split: Split) -> Problems {
        Problems {
            rng: SplitMix64::new(mix64(self.config.seed) ^ split.stream_salt()),
            task: self.clone(),
            split,
        }
    }
}

/// The problems of one split, in order; an endless iterator.
#[derive(Debug, Clone)]
pub struct Problems {
    task: ProceduralTask,
    split: Split,
    rng: SplitMix64,
}

impl Problems {
    /// The split these problems belong to.
    pub fn split(&self) -> Split {
        self.split
    }
}

impl Iterator for Problems {
    type Item = Problem;

    fn next(&mut self) -> Option<Problem> {
        loop {
            let (template, steps) = *self.rng.pick(&self.task.kinds);
            let Some(draft) = template.draft(&mut self.rng, steps, self.task.config.max_operand)
            else {
                continue;
            };
            if self.task.split_of(&draft.question) != self.split {
                continue;
            }
            return Some(Problem {
                question: draft.question,
                answer: draft.answer.to_string(),
                solution: draft.solution,
                steps: draft.steps,
                template,
            });
        }
    }
}

#[cfg(test)]
mod tests;
