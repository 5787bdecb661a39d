//! Shared by the benchmarks: a counting allocator for peak memory, the benchmark model shapes, and
//! the Python baselines they run in the same process.
#![allow(dead_code)] // each bench uses a different subset

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use mathrl::model::Qwen2Config;

/// Counts live heap bytes and their peak (candle's CPU tensors live on the heap).
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

/// Peak heap bytes above the live bytes at the start, while `f` runs.
pub fn peak_bytes_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - base)
}

/// CPU time (user + system) this process has used so far, in ms, from `/proc/self/stat` (10 ms
/// ticks); `None` off Linux.
pub fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0)
}

/// Bytes in MiB.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The ~60M-parameter random config of the benchmarks: hidden 512, 8 layers, 8 heads, 2 KV heads,
/// intermediate 1408, vocab 32000 (untied).
pub fn config_60m() -> Qwen2Config {
    Qwen2Config {
        vocab_size: 32000,
        hidden_size: 512,
        intermediate_size: 1408,
        num_hidden_layers: 8,
        num_attention_heads: 8,
        num_key_value_heads: 2,
        max_position_embeddings: 2048,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: false,
        torch_dtype: Some("float32".into()),
        bos_token_id: None,
        eos_token_ids: vec![],
        pad_token_id: None,
        architecture: None,
        num_labels: None,
    }
}

/// Stdout of the Python baseline `benches/<script>` (2 threads, passive OpenMP waiting), or
/// `None` after printing why it did not run; `None` too when `MATHRL_BENCH_NO_TORCH` is set.
#[allow(dead_code)] // not every bench has a Python baseline
pub fn python_baseline(script: &str) -> Option<String> {
    python_baseline_with(script, &[])
}

/// [`python_baseline`] with command-line arguments for the script.
#[allow(dead_code)]
pub fn python_baseline_with(script: &str, args: &[&str]) -> Option<String> {
    if std::env::var_os("MATHRL_BENCH_NO_TORCH").is_some() {
        return None;
    }
    let path = format!("{}/benches/{script}", env!("CARGO_MANIFEST_DIR"));
    match std::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env("OMP_NUM_THREADS", "2")
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            print!("{text}");
            Some(text)
        }
        Ok(out) => {
            println!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
            None
        }
        Err(e) => {
            println!("{script} not run: {e}");
            None
        }
    }
}
