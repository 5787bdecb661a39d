#!/usr/bin/env bash
# Compiles candle-kernels' ahead-of-time CUDA objects (the GGUF and MoE kernels) on a machine
# with nvcc and many cores, typically the GPU machine, for scripts/cuda-build.sh's
# MATHRL_PREBUILT_KERNELS. With the same flags as candle-kernels' build script.
#
#   scripts/cuda-prebuild-kernels.sh KERNELS_SRC OUT_DIR [COMPUTE_CAP]
#
# KERNELS_SRC is candle-kernels' source folder (the crate's root, as cargo unpacked it, e.g.
# ~/.cargo/registry/src/*/candle-kernels-0.11.1; copy it to the GPU machine). COMPUTE_CAP
# defaults to 90 (H100/H200: sm_90a, as candle-kernels picks for 9.0).
set -euo pipefail
src="$(cd "$1" && pwd)" out="$(mkdir -p "$2" && cd "$2" && pwd)" cap="${3:-90}"
arch="$cap"; [[ "$cap" == 90 ]] && arch=90a
files=(src/moe/moe_gguf.cu src/moe/moe_wmma.cu src/moe/moe_wmma_gguf.cu src/mmvq_gguf.cu
       src/mmq_gguf/mmq_quantize.cu src/mmq_gguf/mmq_instance_{q4_0,q4_1,q5_0,q5_1,q8_0,q2_k,q3_k,q4_k,q5_k,q6_k}.cu)
cd "$src"
printf '%s\n' "${files[@]}" | xargs -P "$(nproc)" -I{} sh -c \
  'nvcc -gencode arch=compute_'"$arch"',code=sm_'"$arch"' -c -o "'"$out"'/$(basename {} .cu).o" --default-stream per-thread --expt-relaxed-constexpr -std=c++17 -O3 -Xcompiler -fPIC -Xcompiler -fPIC {} && echo "built {}"'
