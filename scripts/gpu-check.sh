#!/usr/bin/env bash
# The GPU validation, in one run of a few minutes on one H100/H200, with binaries built on a
# machine without a GPU by `scripts/cuda-build.sh --tests` (which bundles them into
# target/cuda/gpu-bundle/: the release `mathrl`, the test binary `device_parity`, the
# bench `scale`). Prints one table:
#   (a) parity on the GPU against the CPU fixtures: tiny reference log-probs in f32 and bf16,
#       greedy generation equal to the reference, behaviour log-probs of draws made on the GPU;
#       the release binary's `logprobs` recipe on the GPU against the same on the CPU;
#   (b) a GRPO step and an SFT step on the GPU whose losses match the CPU's in f32 within 1e-4;
#   (c) generation tokens/s and a GRPO step's time and peak memory at a real model's shape in
#       bf16, next to transformers `generate` and a PyTorch GRPO step on the same GPU.
#
#   scripts/gpu-check.sh                        # on the GPU machine, from the repository root
#   scripts/gpu-check.sh --device cpu --build   # here: builds CPU binaries, runs every part on CPU
#
# Options: --device cuda|cpu (default cuda), --bundle DIR (default target/cuda/gpu-bundle),
# --build (CPU only: build the binaries with cargo first), --shape 1.5b|0.5b|tiny (default 1.5b
# on cuda, tiny on cpu), --no-torch (skip the PyTorch baselines).
# On the GPU machine, CUDA's libraries must be on LD_LIBRARY_PATH (this script adds the PyTorch
# wheel's nvidia/*/lib folders when python3 has them, and /usr/local/cuda/lib64).
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda bundle=target/cuda/gpu-bundle build=0 shape="" torch=1
while (($#)); do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --bundle) bundle="$2"; shift 2 ;;
    --build) build=1; shift ;;
    --shape) shape="$2"; shift 2 ;;
    --no-torch) torch=0; shift ;;
    *) echo "usage: $0 [--device cuda|cpu] [--bundle DIR] [--build] [--shape S] [--no-torch]" >&2; exit 2 ;;
  esac
done
[[ -n "$shape" ]] || { [[ "$device" == cpu ]] && shape=tiny || shape=1.5b; }

if ((build)); then
  [[ "$device" == cpu ]] || { echo "gpu-check: --build is for --device cpu (build CUDA binaries with scripts/cuda-build.sh --tests)" >&2; exit 2; }
  bundle=target/gpu-check-cpu
  cargo build --bin mathrl -q && cargo test -q --no-run -p mathrl --test device_parity \
    && cargo build -q --bench scale || exit 1
  mkdir -p "$bundle"
  newest() { ls -t target/debug/deps/"$1"-* | grep -v '\.d$' | head -1; }
  cp target/debug/mathrl "$bundle/mathrl"
  cp "$(newest device_parity)" "$bundle/device_parity"
  cp "$(newest scale)" "$bundle/scale"
fi
for bin in mathrl device_parity scale; do
  [[ -x "$bundle/$bin" ]] || { echo "gpu-check: $bundle/$bin is missing (scripts/cuda-build.sh --tests bundles it)" >&2; exit 1; }
done

# CUDA's libraries from PyTorch's wheels, where the machine has them there.
if [[ "$device" != cpu ]]; then
  extra="$(python3 -c 'import nvidia, os; r = list(nvidia.__path__)[0]; print(":".join(sorted({os.path.join(r, d, "lib") for d in os.listdir(r) if os.path.isdir(os.path.join(r, d, "lib"))})))' 2>/dev/null)"
  [[ -d /usr/local/cuda/lib64 ]] && extra="${extra:+$extra:}/usr/local/cuda/lib64"
  export LD_LIBRARY_PATH="${extra:+$extra:}${LD_LIBRARY_PATH:-}"
fi
# The test binaries find the fixtures from here, wherever they were built.
export MATHRL_REPO_DIR="$PWD" MATHRL_TEST_DEVICE="$device" MATHRL_BENCH_DEVICE="$device" MATHRL_BENCH_SHAPE="$shape"
out="$(mktemp -d)"
rows=()
row() { rows+=("| $1 | $2 | $3 |"); }

# Peak GPU memory (MiB, as nvidia-smi reports it: CUDA context included) while a command runs.
with_peak_memory() {
  local log="$1"; shift
  if command -v nvidia-smi >/dev/null && [[ "$device" != cpu ]]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$log.mem" 2>/dev/null &
    local poller=$!
    "$@" >"$log" 2>&1; local rc=$?
    kill "$poller" 2>/dev/null; wait "$poller" 2>/dev/null
    sort -n "$log.mem" | tail -1 >"$log.peak"
    return $rc
  fi
  "$@" >"$log" 2>&1
}

run_tests() { # part, binary
  local part="$1" bin="$2"
  "$bundle/$bin" --test-threads=1 >"$out/$bin.log" 2>&1
  while read -r name verdict; do
    row "$part" "${name} " "$verdict"
  done < <(sed -nE 's/^test (.*) \.\.\. (ok|FAILED|ignored)$/\1 \2/p' "$out/$bin.log")
  grep -q '^test result: ok' "$out/$bin.log" || { echo "--- $bin output ---"; cat "$out/$bin.log"; }
}

echo "gpu-check: device $device, shape $shape, binaries in $bundle" >&2
if [[ "$device" != cpu ]]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2
  missing="$(ldd "$bundle/mathrl" | grep 'not found')" && echo "gpu-check: libraries not found: $missing" >&2
fi
run_tests "(a)+(b) parity, train steps" device_parity

# The release binary: per-token log-probs of the tiny reference on the device and on the CPU.
for d in "$device" cpu; do
  "$bundle/mathrl" --recipe logprobs --device "$d" --model tests/fixtures/tiny-qwen2 \
    --input tests/fixtures/logprobs-example.json --output "$out/logprobs-$d.json" >"$out/logprobs-$d.log" 2>&1 \
    || { echo "--- mathrl logprobs on $d ---"; cat "$out/logprobs-$d.log"; }
done
diff="$(python3 - "$out/logprobs-$device.json" "$out/logprobs-cpu.json" <<'PY'
import json, math, sys
a, b = (json.load(open(p))["logprobs"] for p in sys.argv[1:3])
pairs = [(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb) if x is not None and y is not None]
print(max(abs(x - y) for x, y in pairs) if pairs else "nan")
PY
)"
# The recipe computes in the device's default dtype: bf16 on a GPU, so the tolerance is the bf16
# one of tests/device_parity.rs (largest error; f32 parity on the GPU is checked there).
tol=1e-4 what=f32
[[ "$device" == cpu ]] || tol=0.2 what="bf16, the GPU default"
verdict=$(python3 -c "print('ok' if float('$diff') < $tol else 'FAILED')" 2>/dev/null || echo FAILED)
row "(a) parity" "release binary: logprobs recipe ($what), $device vs cpu f32, max |Δ| = $diff (< $tol)" "$verdict"

# (c) speed and memory at the model's shape.
with_peak_memory "$out/scale.log" "$bundle/scale"; scale_rc=$?
[[ $scale_rc == 0 ]] || { echo "--- scale bench ---"; cat "$out/scale.log"; }
if ((torch)) && python3 -c 'import torch, transformers' 2>/dev/null; then
  with_peak_memory "$out/torch.log" python3 benches/torch_scale.py --device "$device" --shape "$shape" \
    || { echo "--- torch_scale.py ---"; cat "$out/torch.log"; }
fi
python3 - "$out" "$shape" <<'PY' >"$out/speed.md"
import json, os, sys
out, shape = sys.argv[1:3]
def phases(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return {}
    rows = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            try:
                d = json.loads(line)
                rows[d.get("phase")] = d
            except ValueError:
                pass
    return rows
def peak(name):
    path = os.path.join(out, name + ".peak")
    return open(path).read().strip() + " MiB" if os.path.exists(path) and open(path).read().strip() else "n/a"
ours, theirs = phases("scale.log"), phases("torch.log")
load = ours.get("load", {})
print(f"| (c) speed | shape {shape}: {load.get('params', '?')} parameters, {load.get('dtype', '?')} | loaded in {load.get('seconds', float('nan')):.1f} s |")
for phase in ["generate 8x1", "generate 2x8"]:
    a, b = ours.get(phase, {}).get("tokens_per_s"), theirs.get(phase, {}).get("tokens_per_s")
    ratio = f", {a / b:.2f}x transformers" if a and b else ""
    print(f"| (c) speed | {phase} (32 + 128 tokens): mathrl {a or float('nan'):.0f} tok/s, transformers {b or float('nan'):.0f} tok/s | ratio{ratio or ' n/a'} |")
a, b = ours.get("grpo step", {}), theirs.get("grpo step", {})
sa, sb = a.get("median_seconds"), b.get("median_seconds")
ratio = f"{sb / sa:.2f}x PyTorch's speed" if sa and sb else "n/a"
print(f"| (c) speed | GRPO step, {a.get('sequences', '?')} x (32 + 256) tokens: mathrl {sa or float('nan'):.3f} s, PyTorch ({b.get('mode', '?')}) {sb or float('nan'):.3f} s | {ratio} |")
print(f"| (c) memory | peak GPU memory over the run (nvidia-smi, context included): mathrl {peak('scale.log')}, PyTorch {peak('torch.log')} | PyTorch max_allocated in the GRPO step: {b.get('peak_allocated_mib', 'n/a')} MiB |")
PY

echo
echo "| part | check | result |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
cat "$out/speed.md"
failed=$(printf '%s\n' "${rows[@]}" | grep -c 'FAILED')
((scale_rc == 0)) || failed=$((failed + 1))
echo
echo "gpu-check: $failed failed; logs in $out"
exit $((failed > 0))
