//! What each recipe takes from the command line, and which config keys it sets itself.
//!
//! One binary runs every recipe, so `--checker` given to `sft` parses; these tables let the
//! binary warn that such a flag has no effect, and let `--print-config` mark the keys whose
//! value the recipe replaces.

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use crate::cli::Cli;

/// Flags every recipe accepts: choosing it and logging.
const ALWAYS: &[&str] = &["recipe", "list_recipes", "log_level"];
/// The config: `--config`, `--set`, `--print-config`.
const CONFIG: &[&str] = &["config", "sets", "print_config"];
/// A run directory with metrics, on a device, seeded.
const RUN: &[&str] = &["output", "logdir", "device", "dtype", "seed"];
/// A training loop on a model and a data file, bounded and resumable.
const TRAINING: &[&str] = &["model", "data", "max_steps", "resume"];
/// The devices of the RL run's parts and its remote workers.
const RL: &[&str] = &[
    "rm",
    "rollout_device",
    "rm_device",
    "listen",
    "cookie_file",
    "cookie",
    "handshake_timeout",
    "wait_for_workers",
];
/// The evaluation sets.
const EVAL: &[&str] = &["model", "rm", "datasets", "limit", "data_dir"];
/// The evaluation sets of an RL run, evaluated every `eval_every` steps.
const RL_EVAL: &[&str] = &["eval_data", "datasets", "limit", "data_dir"];

/// The clap ids of the flags `recipe` reads (besides [`ALWAYS`]); `None` for an unknown recipe.
pub fn flags_read(recipe: &str) -> Option<Vec<&'static str>> {
    let groups: &[&[&str]] = match recipe {
        "qwen25-math-rl" => &[CONFIG, RUN, TRAINING, RL, RL_EVAL],
        // The pipeline hands its command line to each stage (SFT, RM, RL, eval).
        "pipeline" => &[CONFIG, RUN, TRAINING, RL, RL_EVAL, EVAL],
        "logprobs" => &[&["model", "input", "output", "device", "dtype"]],
        "rm-score" => &[&["rm", "input", "output", "device", "dtype"]],
        "grade" => &[&["input", "output", "checker"]],
        "decontaminate" => &[&["input", "output", "data_dir"]],
        "python" => &[CONFIG, &["input", "output"]],
        "sandbox-check" => &[CONFIG],
        "sft" => &[CONFIG, RUN, TRAINING],
        "rm-retraining" | "sft-data-evolution" | "tir-data-evolution" => {
            &[CONFIG, RUN, TRAINING, &["rm", "data_dir"]]
        }
        "tiny-bootstrap" => &[CONFIG, RUN, &["max_steps", "resume"]],
        "eval" => &[CONFIG, RUN, EVAL],
        "generate" => &[
            CONFIG,
            &["model", "input", "output", "device", "dtype", "seed"],
        ],
        "synthesize" => &[CONFIG, RUN, &["model", "data", "data_dir"]],
        _ => return None,
    };
    Some(groups.iter().flat_map(|g| g.iter().copied()).collect())
}

/// The clap ids of the flags given on the command line (not defaults).
pub fn given_flags(matches: &ArgMatches) -> Vec<String> {
    matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect()
}

/// The flags of `given` (clap ids) that `recipe` does not read, as `--flag` names.
pub fn ignored_flags(recipe: &str, given: &[String]) -> Vec<String> {
    let Some(read) = flags_read(recipe) else {
        return Vec::new();
    };
    let command = Cli::command();
    given
        .iter()
        .filter(|id| !ALWAYS.contains(&id.as_str()) && !read.contains(&id.as_str()))
        // Ids that are no argument (the derive's group of all of them) are skipped.
        .filter_map(|id| {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == id.as_str())?;
            Some(format!("--{}", arg.get_long().unwrap_or(id)))
        })
        .collect()
}

/// Config keys that `recipe` replaces, `(key, by what)`, among the dotted `keys` of its config:
/// the run's step bound and seed, and each optimizer's `lr`, which its learning-rate schedule
/// sets every step.
pub fn keys_set_by_recipe(recipe: &str, keys: &[String]) -> Vec<(String, String)> {
    let mut set = Vec::new();
    if recipe == "qwen25-math-rl" {
        set.push(("trainer.max_steps".into(), "`steps` and --max-steps".into()));
        set.push(("trainer.seed".into(), "--seed".into()));
    }
    for key in keys {
        if let Some(prefix) = key.strip_suffix("optimizer.lr") {
            let schedule = format!("{prefix}train_step.schedule");
            if keys.iter().any(|k| k.starts_with(&schedule)) {
                set.push((key.clone(), format!("`{schedule}`")));
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_in_the_table_exists_and_every_flag_is_read_by_some_recipe() {
        let ids: Vec<String> = Cli::command()
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|id| id != "help" && id != "version")
            .collect();
        let mut read_somewhere: Vec<&str> = ALWAYS.to_vec();
        for recipe in crate::recipes() {
            let flags = flags_read(recipe.name)
                .unwrap_or_else(|| panic!("{} has no row in the flag table", recipe.name));
            for flag in &flags {
                assert!(ids.iter().any(|id| id == flag), "{flag} is not a flag");
            }
            read_somewhere.extend(flags);
        }
        for id in &ids {
            assert!(
                read_somewhere.contains(&id.as_str()),
                "no recipe reads --{id}"
            );
        }
    }

    #[test]
    fn ignored_flags_are_named_by_their_long_names() {
        let given = ["checker", "sets", "datasets", "model", "log_level", "Cli"].map(String::from);
        assert_eq!(
            ignored_flags("sft", &given),
            vec!["--checker".to_string(), "--datasets".into()]
        );
        assert!(ignored_flags("grade", &["checker".into()]).is_empty());
        assert_eq!(ignored_flags("grade", &given[1..2]), vec!["--set"]);
    }

    #[test]
    fn the_schedule_replaces_each_optimizer_lr_and_the_rl_recipe_its_bound_and_seed() {
        let keys = [
            "learner.optimizer.lr",
            "learner.train_step.schedule.peak_lr",
            "other.optimizer.lr",
        ]
        .map(String::from);
        let set = keys_set_by_recipe("sft", &keys);
        assert_eq!(
            set,
            vec![(
                "learner.optimizer.lr".to_string(),
                "`learner.train_step.schedule`".to_string()
            )]
        );
        let rl: Vec<String> = keys_set_by_recipe("qwen25-math-rl", &[])
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(rl, ["trainer.max_steps", "trainer.seed"]);
    }
}
