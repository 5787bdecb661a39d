#!/usr/bin/env bash
# Builds mathrl with candle's CUDA backend on a machine with no GPU and no system CUDA toolkit.
#
#   scripts/cuda-build.sh                 # release binary: target/cuda/release/mathrl
#   scripts/cuda-build.sh --tests         # also the GPU check's test and bench binaries, stripped
#                                         # into target/cuda/gpu-bundle/ for scripts/gpu-check.sh
#   scripts/cuda-build.sh --check         # cargo check only (no nvcc, no link): minutes, not tens
#
# The toolkit comes from PyPI's `cuda-toolkit` wheels, installed into a venv under
# target/cuda-toolkit/. Pick the version the *target* driver supports: candle loads its kernels
# as PTX that the driver compiles at start, and PTX from a newer nvcc does not load on an older
# driver (driver 580 = CUDA 13.0, the default here). Environment knobs:
#   CUDA_TOOLKIT_VERSION   pip version spec of cuda-toolkit (default 13.0.*)
#   CUDA_COMPUTE_CAP       the GPU's compute capability without the dot (default 90: H100/H200)
#   CARGO_TARGET_DIR       where the CUDA build goes (default target/cuda, beside the CPU build)
#   MATHRL_PREBUILT_KERNELS  a folder of candle-kernels' ahead-of-time objects (<stem>.o) built
#                          elsewhere by scripts/cuda-prebuild-kernels.sh: used in place of
#                          compiling those .cu files here. candle-kernels compiles its GGUF and
#                          MoE kernels (13 files) ahead of time, one at a time, 5-25 minutes each
#                          on 2 cores; a GPU machine's nvcc does them all in a few minutes. While
#                          the folder holds a file `.pending`, the build waits for each object
#                          (the rest of the build goes on meanwhile).
#
# At run time the GPU machine needs the driver (libcuda.so.1) and CUDA's libraries: cublas,
# cublasLt, curand, nvrtc of the same major version, on LD_LIBRARY_PATH (or the loader's path).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=build
case "${1:-}" in
  "") ;;
  --tests) mode=tests ;;
  --check) mode=check ;;
  *) echo "usage: $0 [--tests|--check]" >&2; exit 2 ;;
esac

version="${CUDA_TOOLKIT_VERSION:-13.0.*}"
venv="target/cuda-toolkit/venv"
stamp="target/cuda-toolkit/installed-$version"
if [[ ! -f "$stamp" ]]; then
  echo "cuda-build: installing cuda-toolkit==$version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "cuda-toolkit[nvcc,cudart,cublas,curand,nvrtc,cccl]==$version"
  touch "$stamp"
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cuda_home="$(ls -d "$site"/nvidia/cu1[0-9] | sort -V | tail -1)"
[[ -x "$cuda_home/bin/nvcc" ]] || { echo "cuda-build: no nvcc under $cuda_home" >&2; exit 1; }

# The wheels ship versioned libraries only (libcublas.so.13); the linker looks for libcublas.so.
for lib in "$cuda_home"/lib/lib*.so.*; do
  base="${lib%%.so.*}.so"
  [[ -e "$base" ]] || ln -s "$(basename "$lib")" "$base"
done

# cudarc links against the driver library, which only a GPU machine has. At link time a stub with
# the driver's symbols stands in (soname libcuda.so.1, so the real driver is loaded at run time),
# as the toolkit's own lib/stubs/libcuda.so does on a full install.
stub_dir="$cuda_home/lib/stubs"
if [[ ! -f "$stub_dir/libcuda.so" ]]; then
  cudarc_src="$(cargo metadata --format-version 1 --locked --features mathrl/cuda \
    | "$venv/bin/python" -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')"
  mkdir -p "$stub_dir"
  grep -ohE '^\s+(pub )?fn (cu[A-Za-z0-9_]+)\(' "$cudarc_src"/src/driver/sys/*.rs \
    | sed -E 's/.*fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u \
    | sed 's/.*/void &(void) {}/' > "$stub_dir/libcuda-stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub_dir/libcuda.so" "$stub_dir/libcuda-stub.c"
fi

if [[ -n "${MATHRL_PREBUILT_KERNELS:-}" ]]; then
  export MATHRL_PREBUILT_KERNELS="$(cd "$MATHRL_PREBUILT_KERNELS" && pwd)"
  export MATHRL_REAL_NVCC="$cuda_home/bin/nvcc" NVCC="$PWD/scripts/nvcc-prebuilt.sh"
fi

export CUDA_HOME="$cuda_home"
export PATH="$cuda_home/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
# The libraries' own location, for running the build scripts' probes and any test here.
export LD_LIBRARY_PATH="$cuda_home/lib:${LD_LIBRARY_PATH:-}"

features=(--features mathrl-recipes/cuda,mathrl/cuda)
case "$mode" in
  check) cargo check --workspace --all-targets "${features[@]}" ;;
  build) cargo build --release -p mathrl-recipes --bin mathrl "${features[@]}" ;;
  tests)
    cargo build --release -p mathrl-recipes --bin mathrl "${features[@]}"
    cargo test --release -p mathrl --test device_parity --no-run "${features[@]}"
    cargo bench -p mathrl --bench scale --no-run "${features[@]}"
    bundle="$CARGO_TARGET_DIR/gpu-bundle"
    mkdir -p "$bundle"
    newest() { ls -t "$CARGO_TARGET_DIR"/release/deps/"$1"-* | grep -v '\.d$' | head -1; }
    strip -o "$bundle/mathrl" "$CARGO_TARGET_DIR/release/mathrl"
    strip -o "$bundle/device_parity" "$(newest device_parity)"
    strip -o "$bundle/scale" "$(newest scale)"
    du -sh "$bundle"/* >&2
    ;;
esac
echo "cuda-build: done ($mode) in $CARGO_TARGET_DIR" >&2
