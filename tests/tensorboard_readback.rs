//! Writes an event file with `TensorBoardSink` and reads it back with TensorBoard's own
//! `EventAccumulator` (`tests/tensorboard_readback.py`). Without a Python `tensorboard` the test
//! notes it and passes, unless `MATHRL_REQUIRE_TENSORBOARD=1` (as in CI).

use mathrl::metrics::{HParamValue, TensorBoardSink};
use mathrl::Metrics;
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn tensorboard_available() -> bool {
    let import = Command::new("python3")
        .args(["-c", "import tensorboard"])
        .output();
    if matches!(&import, Ok(out) if out.status.success()) {
        return true;
    }
    let required = std::env::var("MATHRL_REQUIRE_TENSORBOARD").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "MATHRL_REQUIRE_TENSORBOARD=1 but `python3 -c 'import tensorboard'` fails: {import:?}"
    );
    eprintln!("note: python3 cannot import tensorboard; skipping the TensorBoard read-back");
    false
}

#[test]
fn tensorboard_reads_back_every_scalar_text_histogram_and_hparam() {
    if !tensorboard_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("run");
    let metrics = Metrics::new(TensorBoardSink::create(&log_dir).unwrap());
    let (mut scalars, mut texts) = (Vec::new(), Vec::new());

    // Four threads log their own tags through clones of one handle, sharing the file.
    let worker_value = |worker: u64, step: u64| {
        (worker as f64 + 1.0) * (step as f64 * 0.37).sin() * 10f64.powi(worker as i32 - 2)
    };
    std::thread::scope(|s| {
        for worker in 0..4u64 {
            let metrics = metrics.clone();
            s.spawn(move || {
                for step in 0..50u64 {
                    metrics.scalar(
                        &format!("worker{worker}/value"),
                        step,
                        worker_value(worker, step),
                    );
                }
            });
        }
    });
    for worker in 0..4u64 {
        for step in 0..50u64 {
            let (tag, value) = (format!("worker{worker}/value"), worker_value(worker, step));
            scalars.push(json!({"tag": tag, "step": step, "value": value}));
        }
    }
    // Several tags at one step, large steps, and steps going backwards across tags.
    let step_values = [
        (1_000_000_007, [0.0, -3.25, 1e-30]),
        (5, [12345.678, 0.1, -7.0]),
    ];
    for (step, [loss, reward, lr]) in step_values {
        metrics.scalars(
            step,
            &[
                ("train/loss", loss),
                ("train/reward", reward),
                ("train/lr", lr),
            ],
        );
        for (tag, value) in [
            ("train/loss", loss),
            ("train/reward", reward),
            ("train/lr", lr),
        ] {
            scalars.push(json!({"tag": tag, "step": step, "value": value}));
        }
    }
    metrics.flush().unwrap();
    let samples = [
        (0, "samples/completion", "The answer is $\\boxed{42}$."),
        (
            1,
            "samples/completion",
            "Line one\nline two\n\ttabbed, «quotes», 数学, ∫x dx = x²/2 + C 🎉",
        ),
        (1, "samples/prompt", ""),
        (2, "samples/completion", "trailing newline\n"),
    ];
    for (step, tag, text) in samples {
        metrics.text(tag, step, text);
        texts.push(json!({"tag": tag, "step": step, "text": text}));
    }
    // The run's settings, and per-step distributions (one with a NaN, left out; one all equal).
    metrics.hparams(&[
        ("grpo.loss.beta".to_string(), HParamValue::Number(0.001)),
        ("trainer.seed".to_string(), HParamValue::Number(3.0)),
        ("dtype".to_string(), HParamValue::Text("bf16".into())),
        (
            "grpo.filter_zero_variance_groups".to_string(),
            HParamValue::Bool(true),
        ),
    ]);
    let hparams = json!({
        "grpo.loss.beta": 0.001, "trainer.seed": 3.0, "dtype": "bf16",
        "grpo.filter_zero_variance_groups": true,
    });
    let distributions: [(&str, u64, Vec<f64>); 3] = [
        ("train/rewards", 1, vec![0.0, 1.0, 1.0, 0.25, f64::NAN]),
        ("train/rewards", 2, vec![1.0; 6]),
        (
            "train/advantages",
            1,
            (0..97).map(|i| (i as f64 * 0.37).sin()).collect(),
        ),
    ];
    let mut histograms = Vec::new();
    for (tag, step, values) in distributions {
        metrics.histogram(tag, step, &values);
        let finite: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        histograms.push(json!({
            "tag": tag, "step": step, "num": finite.len(),
            "min": finite.iter().copied().fold(f64::INFINITY, f64::min),
            "max": finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "sum": finite.iter().sum::<f64>(),
        }));
    }
    assert_eq!(metrics.write_failures(), 0);
    drop(metrics); // the last records reach the disk on drop

    let mut expected = json!({
        "scalars": scalars, "texts": texts, "histograms": histograms, "hparams": hparams,
    });
    let (stdout, passed) = read_back(dir.path(), &log_dir, &expected);
    assert!(passed, "TensorBoard read back something else:\n{stdout}");

    // A wrong hyperparameter or histogram count is noticed too.
    expected["hparams"]["trainer.seed"] = json!(4.0);
    expected["histograms"][2]["num"] = json!(96);
    let (stdout, passed) = read_back(dir.path(), &log_dir, &expected);
    assert!(
        !passed && stdout.contains("2 mismatch(es)"),
        "the checker missed planted errors:\n{stdout}"
    );

    // The checker itself must notice a value off by 1e-4 (relative) and a changed character.
    scalars[7]["value"] = json!(scalars[7]["value"].as_f64().unwrap() * (1.0 + 1e-4));
    texts[1]["text"] = json!("Line one\nline two\n\ttabbed, «quotes», 数学, ∫x dx = x²/2 + C 🎈");
    let (stdout, passed) = read_back(
        dir.path(),
        &log_dir,
        &json!({"scalars": scalars, "texts": texts}),
    );
    assert!(
        !passed && stdout.contains("2 mismatch(es)"),
        "the checker missed planted errors:\n{stdout}"
    );
}

/// Runs the Python checker on `log_dir`; returns its output and whether it passed.
fn read_back(scratch: &Path, log_dir: &Path, expected: &serde_json::Value) -> (String, bool) {
    let expected_path = scratch.join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tensorboard_readback.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(log_dir)
        .arg(&expected_path)
        .output()
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{output}");
    (output, out.status.success())
}
