#!/usr/bin/env bash
# Download the wheels the whole-job benches need on the GPU machine (Python 3.12, x86-64, torch 2.11 there)
# beside its image: bench/e2e_speed.py, wan_vae_speed.py, i2v_speed.py, upscale_speed.py and the GPU tests
# (pytest). Into .whl-app/ (~58 MiB: fits one call's 64 MiB carry with the working tree). Run from the repo
# root, then carry .whl-app (docs/speed.md, "The whole job"):
#   bash bench/wheels_app.sh
set -euo pipefail

DEST=.whl-app
PYTHON=${PYTHON:-python3}
WHEELS=(
  diffusers==0.42.1 importlib_metadata==10.2.0 ftfy==6.3.1 wcwidth==0.9.4 torchao==0.17.0 av==19.0.2
  peft==0.21.2 scikit-image==0.26.0 lazy_loader==0.6
  pytest==8.4.2 pluggy==1.7.0 iniconfig==2.3.1
)

mkdir -p "$DEST"
EXCLUDE=$(git rev-parse --git-path info/exclude)  # keep the wheels out of every call's working tree
grep -qxF "/$DEST/" "$EXCLUDE" 2>/dev/null || echo "/$DEST/" >> "$EXCLUDE"
for wheel in "${WHEELS[@]}"; do
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DEST" "$wheel"
done
echo "total $DEST: $(du -sk "$DEST" | cut -f1) KiB"
