#!/usr/bin/env bash
# nvcc as candle-kernels' build script calls it, except that an object found in
# $MATHRL_PREBUILT_KERNELS (<stem of the .cu file>.o, made by scripts/cuda-prebuild-kernels.sh) is
# copied instead of compiled. While that folder holds `.pending`, it waits for the object to come.
# scripts/cuda-build.sh sets this up; $MATHRL_REAL_NVCC is the nvcc to run otherwise.
set -euo pipefail
src="${*: -1}" out=""
args=("$@")
for ((i = 0; i + 1 < ${#args[@]}; i++)); do
  [[ "${args[i]}" == -o ]] && out="${args[i + 1]}"
done
if [[ "$src" == *.cu && "$out" == *.o ]]; then
  obj="$MATHRL_PREBUILT_KERNELS/$(basename "$src" .cu).o"
  while [[ ! -f "$obj" && -f "$MATHRL_PREBUILT_KERNELS/.pending" ]]; do sleep 5; done
  if [[ -f "$obj" ]]; then
    cp "$obj" "$out"
    exit 0
  fi
fi
exec "$MATHRL_REAL_NVCC" "$@"
