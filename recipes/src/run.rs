//! `RunContext`: what every training or evaluation recipe gets from the command line — device,
//! seed, step bound, output and log directories, the metrics sink, progress bars and the
//! `summary.json` of the run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mathrl::metrics::{JsonlSink, Metrics, TensorBoardSink};

use crate::cli::Cli;
use crate::progress::StepProgress;
use crate::resume::ResumeFrom;

/// The context of one run of a recipe.
pub struct RunContext {
    /// The recipe's name.
    pub recipe: String,
    /// Everything the run writes goes under here (`--output`, default `runs/<recipe>-<time>`).
    pub output_dir: PathBuf,
    /// TensorBoard event files and `metrics.jsonl` (`--logdir`, default the output directory).
    pub log_dir: PathBuf,
    /// Where tensors live.
    pub device: Device,
    /// The run's seed.
    pub seed: u64,
    /// Bound on optimisation steps, if given.
    pub max_steps: Option<u64>,
    /// Where `--resume` says the run starts ([`ResumeFrom::start`] picks the checkpoint).
    pub resume: Option<ResumeFrom>,
    /// The `--data` file, recorded with the run's identity in its checkpoints.
    pub data_file: Option<PathBuf>,
    /// The run's metrics sink (TensorBoard + JSONL).
    pub metrics: Metrics,
    /// `--log-level` hides progress (warn or quieter).
    pub quiet: bool,
    started: Instant,
}

impl RunContext {
    /// Creates the output and log directories and the metrics sinks.
    pub fn new(cli: &Cli, recipe: &str) -> Result<Self> {
        let output_dir = cli
            .output
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(format!("{recipe}-{}", timestamp())));
        let log_dir = cli.logdir.clone().unwrap_or_else(|| output_dir.clone());
        for dir in [&output_dir, &log_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let metrics = Metrics::tee(vec![
            Metrics::new(TensorBoardSink::create(&log_dir)?),
            Metrics::new(JsonlSink::create(&log_dir)?),
        ]);
        Ok(Self {
            recipe: recipe.to_string(),
            output_dir,
            log_dir,
            device: mathrl::device::parse_device(&cli.device)?,
            seed: cli.seed,
            max_steps: cli.max_steps,
            resume: cli.resume.as_deref().map(ResumeFrom::of).transpose()?,
            data_file: cli.data.clone(),
            metrics,
            quiet: crate::progress::quiet_level(&cli.log_level),
            started: Instant::now(),
        })
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// `<output>/<name>`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.output_dir.join(name)
    }

    /// Writes `<output>/summary.json` (atomically) and flushes the metrics.
    pub fn write_summary(&self, summary: &serde_json::Value) -> Result<PathBuf> {
        let path = self.path("summary.json");
        let text = serde_json::to_string_pretty(summary)?;
        mathrl::policy::write_atomic(&path, text.as_bytes())?;
        self.metrics.flush()?;
        Ok(path)
    }

    /// A progress bar with rate and ETA on stderr (hidden when stderr is not a terminal).
    pub fn progress(&self, len: u64, label: &str) -> ProgressBar {
        progress_bar(len, label)
    }

    /// The progress of a training loop of `total` steps: a bar, or a line per step.
    pub fn step_progress(&self, label: &str, total: u64) -> StepProgress {
        StepProgress::new(label, total, self.quiet)
    }
}

/// A progress bar with rate and ETA on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

/// Prints the one-screen end-of-run summary: what ran, how long, where things went.
pub fn print_summary(run: &RunContext, lines: &[(&str, String)]) {
    eprintln!();
    eprintln!(
        "== {} finished in {:.1} s ==",
        run.recipe,
        run.elapsed().as_secs_f64()
    );
    for (key, value) in lines {
        eprintln!("{key:>14}: {value}");
    }
    eprintln!("{:>14}: {}", "output", run.output_dir.display());
    eprintln!(
        "{:>14}: tensorboard --logdir {}",
        "logs",
        run.log_dir.display()
    );
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Whether `dir` exists and is a directory, as an error naming it otherwise.
pub fn require_dir(dir: &Path, what: &str) -> Result<()> {
    if dir.is_dir() {
        Ok(())
    } else {
        anyhow::bail!(
            "{what} {} does not exist or is not a directory",
            dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
    }
}
