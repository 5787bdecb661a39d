//! Cost of one sandboxed snippet: a trivial print (interpreter start, namespaces, mounts,
//! teardown), the same eight at a time from eight threads, and a snippet importing sympy.
//!
//! Run: `cargo bench -p mathrl-sandbox --bench sandbox`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use mathrl_sandbox::{ExecutionStatus, PythonSandbox, SandboxConfig};

fn sandbox() -> Arc<PythonSandbox> {
    let config = SandboxConfig {
        timeout_ms: 30_000,
        ..SandboxConfig::default()
    };
    Arc::new(PythonSandbox::new(config).expect("python3 on PATH"))
}

fn run_checked(sandbox: &PythonSandbox, code: &str) {
    let result = sandbox.run(code).expect("sandbox works");
    assert_eq!(result.status, ExecutionStatus::Success, "{result:?}");
}

fn bench_sandbox(c: &mut Criterion) {
    let sandbox = sandbox();
    eprintln!(
        "isolation: {:?}",
        sandbox.probe_isolation().expect("sandbox works")
    );
    let mut group = c.benchmark_group("sandbox");
    group.sample_size(10);
    group.bench_function("print", |b| b.iter(|| run_checked(&sandbox, "print(1+1)")));
    group.bench_function("print_8_threads", |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let sandbox = Arc::clone(&sandbox);
                    std::thread::spawn(move || run_checked(&sandbox, "print(1+1)"))
                })
                .collect();
            for handle in handles {
                handle.join().expect("thread did not panic");
            }
        })
    });
    let sympy = "from sympy import Rational\nprint(Rational(1, 3) + Rational(1, 6))";
    group.bench_function("sympy_import", |b| b.iter(|| run_checked(&sandbox, sympy)));
    group.finish();
}

criterion_group!(benches, bench_sandbox);
criterion_main!(benches);
