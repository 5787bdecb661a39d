//! A training loop's progress on stderr, TRL-style: on a terminal a bar over the steps with
//! the ETA and the last step's figures; otherwise (a log file, a CI job) one plain line per
//! step, at most one a second but always the last. Nothing under `--log-level warn` or quieter.

use std::io::IsTerminal;
use std::str::FromStr;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mathrl_actors::StepSummary;
use tracing::level_filters::LevelFilter;

/// The progress of one loop of `total` steps.
pub struct StepProgress {
    label: String,
    total: u64,
    output: Output,
    /// Steps done before the first step this loop reported (a resumed run), for the ETA.
    first_step: Option<u64>,
    started: Instant,
    last_line: Option<Instant>,
    min_interval: Duration,
}

enum Output {
    Quiet,
    Bar(ProgressBar),
    Lines,
}

/// Whether `--log-level` hides info messages (a bare level above `info`; a filter such as
/// `mathrl=debug` keeps the progress).
pub fn quiet_level(log_level: &str) -> bool {
    LevelFilter::from_str(log_level.trim()).is_ok_and(|level| level < LevelFilter::INFO)
}

impl StepProgress {
    /// Progress of the loop `label` up to step `total`, on stderr as a bar or as lines (see the
    /// module docs); silent when `quiet`.
    pub fn new(label: &str, total: u64, quiet: bool) -> Self {
        let output = if quiet {
            Output::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} eta {eta} | {msg}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            Output::Bar(bar)
        } else {
            Output::Lines
        };
        Self {
            label: label.to_string(),
            total,
            output,
            first_step: None,
            started: Instant::now(),
            last_line: None,
            min_interval: Duration::from_secs(1),
        }
    }

    /// Plain lines however often steps come (tests).
    pub fn every_step(mut self) -> Self {
        self.min_interval = Duration::ZERO;
        self
    }

    /// Step `step` is done; `fields` are its figures, in order (`("loss", "0.412")`).
    pub fn step(&mut self, step: u64, fields: &[(&str, String)]) {
        if self.first_step.is_none() {
            self.first_step = Some(step.saturating_sub(1));
        }
        match &self.output {
            Output::Quiet => {}
            Output::Bar(bar) => {
                bar.set_position(step);
                bar.set_message(join_fields(fields));
            }
            Output::Lines => {
                let now = Instant::now();
                let due = self
                    .last_line
                    .is_none_or(|last| now.duration_since(last) >= self.min_interval);
                if due || step >= self.total {
                    self.last_line = Some(now);
                    eprintln!("{}", self.line(step, fields, now));
                }
            }
        }
    }

    /// Removes the bar (the lines stay).
    pub fn finish(&self) {
        if let Output::Bar(bar) = &self.output {
            bar.finish_and_clear();
        }
    }

    /// `sft step 3/40 | loss 0.412 | eta 1m05s`.
    fn line(&self, step: u64, fields: &[(&str, String)], now: Instant) -> String {
        let mut line = format!("{} step {step}/{}", self.label, self.total);
        if !fields.is_empty() {
            line.push_str(" | ");
            line.push_str(&join_fields(fields));
        }
        let done = step.saturating_sub(self.first_step.unwrap_or(0));
        if done > 0 && step < self.total {
            let per_step = now.duration_since(self.started).as_secs_f64() / done as f64;
            let eta = per_step * (self.total - step) as f64;
            line.push_str(&format!(" | eta {}", duration(eta)));
        }
        line
    }
}

fn join_fields(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{name} {value}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// `42s`, `3m05s`, `2h07m`.
fn duration(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The figures of a GRPO step, in the order they are shown.
pub fn grpo_fields(summary: &StepSummary) -> Vec<(&'static str, String)> {
    let mut fields = vec![("reward", format!("{:.3}", summary.reward_mean))];
    if let Some(accuracy) = summary.accuracy {
        fields.push(("acc", format!("{:.1}%", 100.0 * accuracy)));
    }
    if let Some(kl) = summary.kl {
        fields.push(("kl", format!("{kl:.4}")));
    }
    fields.push(("len", format!("{:.1}", summary.completion_length_mean)));
    fields.push(("tok/s", format!("{:.0}", summary.tokens_per_second)));
    fields.push(("step", format!("{:.1}s", summary.step_seconds)));
    if summary.skipped_updates > 0 {
        fields.push(("skipped", summary.skipped_updates.to_string()));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_above_info_are_quiet_and_filters_are_not() {
        for quiet in ["warn", "error", "off", " WARN "] {
            assert!(quiet_level(quiet), "{quiet}");
        }
        for loud in [
            "info",
            "debug",
            "trace",
            "mathrl=debug",
            "mathrl_actors=warn",
        ] {
            assert!(!quiet_level(loud), "{loud}");
        }
    }

    #[test]
    fn a_line_has_the_step_the_figures_and_the_eta() {
        let mut progress = StepProgress::new("grpo", 40, true);
        progress.first_step = Some(10);
        let summary = StepSummary {
            step: 12,
            max_steps: 40,
            reward_mean: 0.4123,
            accuracy: Some(0.3125),
            kl: None,
            completion_length_mean: 15.26,
            tokens_per_second: 1234.4,
            step_seconds: 4.06,
            skipped_updates: 0,
        };
        let now = progress.started + Duration::from_secs(10);
        let line = progress.line(12, &grpo_fields(&summary), now);
        // 2 steps in 10 s since the resume at step 10: 28 left at 5 s each.
        assert_eq!(
            line,
            "grpo step 12/40 | reward 0.412 | acc 31.2% | len 15.3 | tok/s 1234 | step 4.1s | eta 2m20s"
        );
        assert_eq!(progress.line(40, &[], now), "grpo step 40/40");
        assert_eq!(duration(7322.0), "2h02m");
    }
}
