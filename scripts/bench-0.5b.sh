#!/usr/bin/env bash
# The proof at 0.5B on this CPU (issue 16, item 5): load, generation and one GRPO step in f32 and
# bf16 at the exact Qwen2.5-0.5B shape, mathrl (benches/scale/cpu_proof.rs) and then PyTorch
# (benches/torch_scale.py --scenario cpu-proof), each phase in its own process so that each peak
# RSS is that phase's. Prints a markdown table with the ratios mathrl / PyTorch of this run.
#
#   scripts/bench-0.5b.sh                          # everything (hours on 2 cores)
#   scripts/bench-0.5b.sh --reduced                # 2 layers, vocab 8,192: checks the logic in minutes
#   scripts/bench-0.5b.sh --runs mathrl:bf16:grpo,torch:bf16:grpo
#
# Options: --reduced; --runs IMPL:DTYPE:PHASE,... (IMPL mathrl|torch, DTYPE f32|bf16, PHASE
# load|generate|grpo; default: load, generate and grpo in f32, grpo in bf16, for both);
# --limit-min N (default 35: a run still going after N minutes is killed and reported as not
# measured); --threads N (default 2: RAYON_NUM_THREADS for mathrl, torch.set_num_threads and
# OMP_NUM_THREADS for PyTorch, which runs with OMP_WAIT_POLICY=PASSIVE); --out DIR (logs and
# results.jsonl; default a new temporary directory).
# The random model is written once to target/bench-cache/ (MATHRL_BENCH_MODEL_DIR overrides; 1 GB
# of bf16 at full size) and reused. PyTorch needs torch and transformers in python3.
set -uo pipefail
cd "$(dirname "$0")/.."

runs="mathrl:f32:load,mathrl:f32:generate,mathrl:f32:grpo,mathrl:bf16:grpo,torch:f32:load,torch:f32:generate,torch:f32:grpo,torch:bf16:grpo"
reduced=0 limit_min=35 threads=2 out=""
usage() { echo "usage: $0 [--reduced] [--runs IMPL:DTYPE:PHASE,...] [--limit-min N] [--threads N] [--out DIR]" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --reduced) reduced=1; shift ;;
    --runs) runs="$2"; shift 2 ;;
    --limit-min) limit_min="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) usage ;;
  esac
done
for run in ${runs//,/ }; do
  [[ "$run" =~ ^(mathrl|torch):(f32|bf16):(load|generate|grpo)$ ]] \
    || { echo "bench-0.5b: \`$run\` is not IMPL:DTYPE:PHASE (mathrl|torch, f32|bf16, load|generate|grpo)" >&2; exit 2; }
done
[[ -n "$out" ]] || out="$(mktemp -d /tmp/bench-0.5b.XXXXXX)"
mkdir -p "$out"
results="$out/results.jsonl"
: >"$results"

export MATHRL_BENCH_SCENARIO=cpu-proof RAYON_NUM_THREADS="$threads"
if ((reduced)); then
  export MATHRL_BENCH_LAYERS=2 MATHRL_BENCH_VOCAB=8192
  model_dir="${MATHRL_BENCH_MODEL_DIR:-$PWD/target/bench-cache/qwen2.5-0.5b-random-l2-v8192}"
else
  model_dir="${MATHRL_BENCH_MODEL_DIR:-$PWD/target/bench-cache/qwen2.5-0.5b-random}"
fi
export MATHRL_BENCH_MODEL_DIR="$model_dir"

echo "bench-0.5b: building the scale bench (release)" >&2
bench="$(cargo bench --bench scale --no-run --message-format=json 2>"$out/build.log" \
  | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "scale" and m.get("executable"):
        print(m["executable"])')"
[[ -x "$bench" ]] || { echo "bench-0.5b: the build failed:" >&2; tail -30 "$out/build.log" >&2; exit 1; }

{
  echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo ' (with local changes)')"
  echo "torch: $(python3 -c 'import torch, transformers; print(torch.__version__, "transformers", transformers.__version__)' 2>&1 | tail -1)"
  echo "threads: $threads; model: $model_dir; started $(date -u +%FT%TZ)"
} | tee "$out/machine.txt" >&2

echo "bench-0.5b: writing (or reusing) the random model" >&2
MATHRL_BENCH_PHASE=prepare "$bench" >"$out/prepare.log" 2>&1 \
  || { echo "bench-0.5b: prepare failed:" >&2; tail -20 "$out/prepare.log" >&2; exit 1; }
tail -1 "$out/prepare.log" >&2

# One phase in its own process, under the time limit; its JSON line (or why there is none) goes to
# results.jsonl, with the load average before and after and the process's CPU seconds.
for run in ${runs//,/ }; do
  IFS=: read -r impl dtype phase <<<"$run"
  log="$out/$impl-$dtype-$phase.log"
  load_before="$(cut -d' ' -f1 /proc/loadavg)"
  echo "bench-0.5b: $run ($(date -u +%T), load average $load_before)" >&2
  if [[ "$impl" == mathrl ]]; then
    cmd=(env MATHRL_BENCH_PHASE="$phase" MATHRL_BENCH_DTYPE="$dtype" "$bench")
  else
    cmd=(env OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$threads" python3 benches/torch_scale.py
         --scenario cpu-proof --phase "$phase" --dtype "$dtype" --model-dir "$model_dir" --threads "$threads")
  fi
  /usr/bin/time -f '%e %U %S' -o "$log.time" timeout --signal=KILL "${limit_min}m" "${cmd[@]}" >"$log" 2>&1
  rc=$?
  python3 - "$log" "$rc" "$run" "$load_before" "$(cut -d' ' -f1 /proc/loadavg)" "$limit_min" >>"$results" <<'PY'
import json, sys
log, rc, run, before, after, limit = sys.argv[1:7]
line = None
for text in open(log, errors="replace"):
    if text.startswith("{"):
        try:
            line = json.loads(text)
        except ValueError:
            pass
impl, dtype, phase = run.split(":")
if line is None or rc != "0":
    why = f"killed after {limit} min" if rc in ("124", "137", "-9") else f"exit {rc}"
    line = {"impl": impl, "dtype": dtype, "phase": phase, "error": why}
try:
    wall, user, system = (float(x) for x in open(log + ".time").read().split()[-3:])
    line["process_seconds"], line["cpu_seconds"] = wall, user + system
except (OSError, ValueError):
    pass
line["load_average"] = [float(before), float(after)]
print(json.dumps(line))
PY
  tail -1 "$results" >&2
  [[ $rc == 0 ]] || { echo "--- $run failed (exit $rc), last lines of $log ---" >&2; tail -15 "$log" >&2; }
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {(r["impl"], r["dtype"], r["phase"]): r for r in rows}
keys = []
for r in rows:
    if (r["phase"], r["dtype"]) not in keys:
        keys.append((r["phase"], r["dtype"]))
what = {
    "load": "load ({d}, trainable)",
    "generate": "generation ({d}), 4 × (64 + 128) tokens",
    "grpo": "GRPO step ({d}), 8 × (64 + 256) tokens, β = 1e-3",
}
def cell(r):
    if r is None:
        return "not run", "not run"
    if "error" in r:
        return f"not measured ({r['error']})", "—"
    t = f"{r['seconds']:,.1f} s"
    if r["phase"] == "generate":
        t += f" ({r['tokens_per_s']:.1f} tok/s)"
    return t, f"{r['peak_rss_mib']:,.0f} MiB"
def ratio(a, b, key):
    if a and b and "error" not in a and "error" not in b:
        return f"{a[key] / b[key]:.2f}×"
    return "—"
print()
print("| what | mathrl time | mathrl peak RSS | PyTorch time | PyTorch peak RSS | time mathrl/PyTorch | memory mathrl/PyTorch |")
print("|---|---|---|---|---|---|---|")
for phase, dtype in keys:
    m, t = by.get(("mathrl", dtype, phase)), by.get(("torch", dtype, phase))
    label = what[phase].format(d=dtype)
    if (phase, dtype) == ("grpo", "bf16"):
        label += " (mathrl: bf16 weights + f32 masters; PyTorch: autocast over f32 weights)"
    print(f"| {label} | {' | '.join(cell(m))} | {' | '.join(cell(t))} | {ratio(m, t, 'seconds')} | {ratio(m, t, 'peak_rss_mib')} |")
print()
print("Per run: CPU seconds / process seconds (2.0 = both cores busy all along), load average before → after,")
print("resident memory at the process's start (before any model; PyTorch's holds torch and transformers):")
for r in rows:
    cores = r["cpu_seconds"] / r["process_seconds"] if r.get("process_seconds") else float("nan")
    print(f"- {r['impl']}:{r['dtype']}:{r['phase']}: {r.get('cpu_seconds', float('nan')):.0f} / "
          f"{r.get('process_seconds', float('nan')):.0f} s ({cores:.2f} cores), "
          f"load {r['load_average'][0]} → {r['load_average'][1]}, "
          f"{r.get('rss_at_start_mib') or float('nan'):,.0f} MiB at start")
sums = {}
for r in rows:
    if "ids_checksum" in r:
        sums.setdefault(r["phase"], set()).add(r["ids_checksum"])
for phase, s in sums.items():
    if len(s) > 1:
        print(f"\nWARNING: the {phase} token ids differ between runs (checksums {sorted(s)})")
PY
echo "bench-0.5b: logs in $out" >&2
