#!/usr/bin/env bash
# Download every wheel bench/t2v_speed.py needs on the GPU machine (Python 3.12, x86-64, torch 2.11 there)
# into .whl/ (~20 MiB). The one wheel too big to share a call's 64 MiB carry (nvidia-cutlass-dsl-libs-cu13,
# 87 MiB) is cut in halves into .whl-big/part1 and .whl-big/part2: carry each in its own call while the
# machine stays warm, then .whl in a third (docs/speed.md has the three commands). Run from the repo root:
#   bash bench/wheels.sh
set -euo pipefail

DEST=.whl
BIG=.whl-big
PYTHON=${PYTHON:-python3}
LIMIT_MIB=40  # what may share a call with .whl (~20 MiB) under the 64 MiB carry limit

WHEELS=(
  # diffusers and what it needs beyond the GPU image
  diffusers==0.42.1 accelerate==1.15.0 safetensors==0.8.0 importlib_metadata==10.2.0 av==19.0.2
  ftfy==6.3.1 wcwidth==0.9.4
  # FlashAttention-4 (pure Python on the CuTe DSL) and its needs (einops, typing_extensions: in the image)
  flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1
  nvidia-cutlass-dsl-libs-cu13==4.8.1 quack-kernels==0.6.5 apache-tvm-ffi==0.1.15.post2
  torch-c-dlpack-ext==0.1.5
  # fp8 linears (built for torch >= 2.11)
  torchao==0.17.0
)
# The CuTe DSL's Python sources and CUDA bindings: they ride with the second half of the big wheel, since
# .whl alone is near the carry limit (libs-base 4.8 holds only the MLIR libraries; `cutlass.cute` is here).
PART2_WHEELS=(
  nvidia-cutlass-dsl-libs-core==4.8.1 cuda-bindings==13.5.0 cuda-pathfinder==1.9.0 protobuf==6.33.1
)

mkdir -p "$DEST"
EXCLUDE=$(git rev-parse --git-path info/exclude)  # keep the wheels out of every call's working tree
for folder in "/$DEST/" "/$BIG/"; do
  grep -qxF "$folder" "$EXCLUDE" 2>/dev/null || echo "$folder" >> "$EXCLUDE"
done
download() {  # download DIR WHEEL: the cp312 manylinux x86-64 wheel, no dependencies
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$1" "$2"
}
for wheel in "${WHEELS[@]}"; do
  download "$DEST" "$wheel"
done

rm -rf "$BIG"
for file in "$DEST"/*.whl; do
  size=$(stat -c %s "$file")
  if (( size > LIMIT_MIB * 1024 * 1024 )); then
    mkdir -p "$BIG/part1" "$BIG/part2"
    half=$(( (size + 1) / 2 ))
    head -c "$half" "$file" > "$BIG/part1/$(basename "$file").a"
    tail -c +"$(( half + 1 ))" "$file" > "$BIG/part2/$(basename "$file").b"
    rm "$file"
    echo "split (too big for one call): $(basename "$file") $(( size / 1024 / 1024 )) MiB"
  fi
done
for wheel in "${PART2_WHEELS[@]}"; do
  download "$BIG/part2" "$wheel"
done

echo "wheel sizes (KiB):"
du -k "$DEST"/*.whl "$BIG"/part*/* 2>/dev/null | sort -n -r
echo "total .whl: $(du -sk "$DEST" | cut -f1) KiB; .whl-big/part1: $(du -sk "$BIG/part1" 2>/dev/null | cut -f1) KiB;" \
  ".whl-big/part2: $(du -sk "$BIG/part2" 2>/dev/null | cut -f1) KiB"
