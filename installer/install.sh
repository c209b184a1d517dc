#!/usr/bin/env bash
# Sets up .venv in the repository root: a Python 3.10-3.12 virtual environment with the torch build that
# fits this machine (CUDA wheel matched to the NVIDIA driver, CPU wheel otherwise, MPS/CPU on macOS), then
# the project's requirements. Re-running is fast: a stamp in .venv skips pip while nothing changed.
#
# Usage: bash installer/install.sh [--test] [--update] [--dry-run] [--cpu]
#   --test     install requirements-test.txt (pytest, ruff, ...) instead of requirements.txt
#   --update   upgrade torch and the requirements even when the stamp says nothing changed
#   --dry-run  print the Python and torch choice, install nothing
#   --cpu      take the CPU build of torch even when an NVIDIA GPU is present
# Environment: PYTHON (interpreter to use), TORCH_INDEX_BASE (PyTorch wheel index root), NVCC (the CUDA
# compiler to build SageAttention with, or "none" to skip that build; default: nvcc on PATH, then
# $CUDA_HOME/bin, then /usr/local/cuda/bin).
#
# On NVIDIA GPUs of compute capability 8.0+ with a CUDA compiler (nvcc) whose major version matches the
# torch build, SageAttention 2 (Turbo's fastest 8-bit attention) is built from source for those GPUs
# (a few minutes, once). Without nvcc the installer says so and Turbo uses the bundled Triton kernel.
set -euo pipefail

TORCH_CPU_VERSION="2.13.0"  # CPU build taken from local wheels when the CPU wheel index is unreachable
TORCH_INDEX_BASE="${TORCH_INDEX_BASE:-https://download.pytorch.org/whl}"
PROBE_TIMEOUT_S=5
SAGE_SOURCE="git+https://github.com/thu-ml/SageAttention.git@d1a57a546c3d395b1ffcbeecc66d81db76f3b4b5"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VENV_PY="$VENV/bin/python"
PYTHON_CHECK='import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 12); print(sys.executable)'

MODE="runtime"
UPDATE=0
DRY_RUN=0
FORCE_CPU=0
TORCH_CHOICE=""  # human-readable label, set by choose_torch
TORCH_ARGS=()    # pip arguments that install that torch, set by choose_torch
TORCH_PIN=""     # constraints file holding the installed torch version, set in main
TORCH_BUILD=""   # the build itself (cpu, macos, cu130, ...): a change of it replaces the installed torch
WANT_FA4=0       # 1 when the GPUs can use flash-attn-4 (compute capability 9.x or 10.x)
SAGE_ARCHS=""    # compute capabilities to build SageAttention for (8.0+), e.g. "9.0"; empty: no build
SAGE_NVCC=""     # the nvcc that builds it
SAGE_CHOICE=""   # human-readable reason for building it or not
SAGE_FAILED=0    # 1 when its build failed: the stamp then leaves it out, so the next run tries again

log() { printf '[install] %s\n' "$*" >&2; }
die() {
    printf '[install] ERROR: %s\n' "$*" >&2
    exit 1
}

parse_args() {
    local arg
    for arg in "$@"; do
        case "$arg" in
            --test) MODE="test" ;;
            --update) UPDATE=1 ;;
            --dry-run) DRY_RUN=1 ;;
            --cpu) FORCE_CPU=1 ;;
            *) die "unknown option '$arg' (expected --test, --update, --dry-run, --cpu)" ;;
        esac
    done
}

# Prints the real path of the first interpreter that runs and is Python 3.10-3.12.
find_python() {
    local candidates=(python3.12 python3.11 python3.10 python3)
    local candidate
    if [[ -n "${PYTHON:-}" ]]; then
        candidates=("$PYTHON")
    fi
    for candidate in "${candidates[@]}"; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        "$candidate" -c "$PYTHON_CHECK" 2>/dev/null && return 0
    done
    die "no Python 3.10, 3.11 or 3.12 found (tried: ${candidates[*]}). Install one (with pip and venv) \
or point PYTHON at it."
}

python_version() { "$1" -c 'import platform; print(platform.python_version())'; }

gpu_count() {
    command -v nvidia-smi >/dev/null 2>&1 || {
        echo 0
        return
    }
    { nvidia-smi -L 2>/dev/null || true; } | grep -c '^GPU ' || true
}

driver_cuda_version() {
    local table
    table="$(nvidia-smi 2>/dev/null || true)"
    sed -nE 's/.*CUDA Version: *([0-9]+\.[0-9]+).*/\1/p' <<<"$table" | head -n 1
}

# Maps the driver's CUDA version (e.g. 12.8) to the newest PyTorch CUDA wheel tag it can run.
cuda_wheel_tag() {
    local version="$1" major minor
    major="${version%%.*}"
    minor="${version#*.}"
    local level=$((major * 100 + minor))
    if ((level >= 1300)); then
        echo cu130
    elif ((level >= 1208)); then
        echo cu128
    elif ((level >= 1206)); then
        echo cu126
    else
        die "the NVIDIA driver supports CUDA $version, PyTorch needs CUDA 12.6 or newer. Update the NVIDIA \
driver to version 560 or newer (580+ for CUDA 13), or run with --cpu to install the CPU build."
    fi
}

cpu_index_reachable() {
    "$1" - "$TORCH_INDEX_BASE/cpu/" "$PROBE_TIMEOUT_S" >/dev/null 2>&1 <<'EOF'
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).close()
EOF
}

# Sets TORCH_CHOICE, TORCH_ARGS, TORCH_BUILD and WANT_FA4 for this machine.
choose_torch() {
    local python="$1" gpus version tag caps
    WANT_FA4=0
    if [[ "$(uname -s)" == Darwin ]]; then
        TORCH_CHOICE="macos"
        TORCH_ARGS=(torch)
        TORCH_BUILD="macos"
        return
    fi
    gpus="$(gpu_count)"
    if ((FORCE_CPU == 0 && gpus > 0)); then
        version="$(driver_cuda_version)"
        [[ -n "$version" ]] || die "nvidia-smi lists $gpus GPU(s) but prints no 'CUDA Version'. \
Check the NVIDIA driver, or run with --cpu."
        tag="$(cuda_wheel_tag "$version")"
        TORCH_CHOICE="cuda $tag (driver CUDA $version, $gpus GPU(s))"
        TORCH_ARGS=(torch --index-url "$TORCH_INDEX_BASE/$tag")
        TORCH_BUILD="$tag"
        caps="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null || true)"
        if grep -qE '^ *(9|10)\.' <<<"$caps"; then WANT_FA4=1; fi
        choose_sage "$caps" "$tag"
        return
    fi
    TORCH_BUILD="cpu"
    if cpu_index_reachable "$python"; then
        TORCH_CHOICE="cpu (PyTorch CPU wheel index)"
        TORCH_ARGS=(torch --index-url "$TORCH_INDEX_BASE/cpu")
    else
        TORCH_CHOICE="cpu (pinned, local wheel; CPU wheel index unreachable)"
        TORCH_ARGS=("torch==$TORCH_CPU_VERSION")
    fi
}

find_nvcc() {
    local candidates=() candidate
    if [[ "${NVCC:-}" == none ]]; then
        return
    elif [[ -n "${NVCC:-}" ]]; then
        candidates+=("$(command -v "$NVCC" 2>/dev/null || true)")
    else
        candidates+=("$(command -v nvcc 2>/dev/null || true)")
        if [[ -n "${CUDA_HOME:-}" ]]; then candidates+=("$CUDA_HOME/bin/nvcc"); fi
        candidates+=(/usr/local/cuda/bin/nvcc)
    fi
    for candidate in "${candidates[@]}"; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            echo "$candidate"
            return
        fi
    done
}

# Sets SAGE_ARCHS, SAGE_NVCC and SAGE_CHOICE from the GPUs' compute capabilities and the torch CUDA tag.
choose_sage() {
    local caps="$1" tag="$2" nvcc release archs
    SAGE_ARCHS=""
    SAGE_NVCC=""
    # The capabilities SageAttention has CUDA kernels for (not 10.x: its sageattn refuses SM100).
    archs="$(tr -d ' ' <<<"$caps" | grep -xE '8\.[069]|9\.0|12\.[01]' | sort -u | paste -sd ';' - || true)"
    if [[ -z "$archs" ]]; then
        SAGE_CHOICE="no (no GPU SageAttention has kernels for: 8.0, 8.6, 8.9, 9.0, 12.0, 12.1)"
        return
    fi
    nvcc="$(find_nvcc)"
    if [[ -z "$nvcc" ]]; then
        SAGE_CHOICE="no (no CUDA compiler (nvcc) found; Turbo uses the bundled Triton 8-bit attention)"
        return
    fi
    release="$({ "$nvcc" --version 2>/dev/null || true; } | sed -nE 's/.*release ([0-9]+\.[0-9]+).*/\1/p')"
    release="${release%%$'\n'*}"
    if [[ "${release%%.*}" != "${tag:2:2}" ]]; then
        SAGE_CHOICE="no ($nvcc is CUDA ${release:-unknown}, torch is built for $tag: the major versions must \
match; Turbo uses the bundled Triton 8-bit attention)"
        return
    fi
    SAGE_ARCHS="$archs"
    SAGE_NVCC="$nvcc"
    SAGE_CHOICE="build for compute capability $archs with $nvcc (CUDA $release)"
}

print_choice() {
    local python="$1"
    echo "python: $python ($(python_version "$python"))"
    echo "torch: $TORCH_CHOICE"
    echo "torch install: pip install ${TORCH_ARGS[*]}"
    if ((WANT_FA4)); then echo "flash-attn-4: yes"; else echo "flash-attn-4: no"; fi
    echo "sageattention: ${SAGE_CHOICE:-no (no NVIDIA GPU, or the CPU build of torch)}"
}

ensure_venv() {
    local python="$1"
    if [[ -x "$VENV_PY" ]] && "$VENV_PY" -c "$PYTHON_CHECK; import pip" >/dev/null 2>&1; then
        return
    fi
    if [[ -e "$VENV" ]]; then
        log "$VENV has no working Python 3.10-3.12 with pip; recreating it"
        rm -rf "$VENV"
    fi
    log "creating $VENV with $python"
    "$python" -m venv "$VENV" || die "could not create the virtual environment. On Debian/Ubuntu install \
the venv module first, e.g. 'apt-get install python3-venv'."
}

stamp_file() { echo "$VENV/.install-stamp-$1"; }

# Hash of what an install depends on: interpreter, torch, flash-attn and SageAttention choices, requirements.
stamp_key() {
    local mode="$1"
    {
        python_version "$VENV_PY"
        echo "torch=$TORCH_BUILD fa4=$WANT_FA4"
        if ((SAGE_FAILED == 0)); then echo "sage=$SAGE_ARCHS:$SAGE_NVCC"; fi
        cat "$ROOT/requirements.txt"
        if [[ "$mode" == test ]]; then cat "$ROOT/requirements-test.txt"; fi
    } | "$VENV_PY" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
}

pip_install() {
    if ((UPDATE)); then
        "$VENV_PY" -m pip install --upgrade "$@"
    else
        "$VENV_PY" -m pip install "$@"
    fi
}

install_torch() {
    local choice_file="$VENV/.torch-build"
    if [[ -f "$choice_file" && "$(cat "$choice_file")" != "$TORCH_BUILD" ]]; then
        log "torch build changed to $TORCH_BUILD; removing the installed torch first"
        "$VENV_PY" -m pip uninstall -y torch
    fi
    if [[ "${TORCH_ARGS[0]}" == "torch==$TORCH_CPU_VERSION" ]]; then
        # Only a local wheel is sure to be a CPU build; PyPI's Linux torch is the multi-GB CUDA one.
        pip_install --no-index --no-deps "${TORCH_ARGS[@]}" || die "no local CPU wheel for \
torch==$TORCH_CPU_VERSION fits Python $(python_version "$VENV_PY"), and the CPU wheel index \
$TORCH_INDEX_BASE/cpu is unreachable. Use Python 3.11 (PYTHON=python3.11) or allow access to that index."
    fi
    pip_install "${TORCH_ARGS[@]}"
    echo "$TORCH_BUILD" >"$choice_file"
    # Later installs (requirements, flash-attn-4; --upgrade with --update) must keep this torch build:
    # an unpinned torch from PyPI would be the multi-GB CUDA build on a machine without a GPU.
    "$VENV_PY" -c 'import torch; print(f"torch=={torch.__version__}")' >"$TORCH_PIN"
}

install_flash_attn() {
    ((WANT_FA4)) || return 0
    log "installing flash-attn-4 (optional)"
    pip_install -c "$TORCH_PIN" flash-attn-4 || log "flash-attn-4 did not install; the app falls back to PyTorch attention"
}

# Builds SageAttention 2 from source for SAGE_ARCHS against the installed torch (--no-build-isolation).
install_sage() {
    [[ -n "$SAGE_ARCHS" ]] || {
        log "sageattention: ${SAGE_CHOICE:-no (no NVIDIA GPU, or the CPU build of torch)}"
        return 0
    }
    log "sageattention: $SAGE_CHOICE (a few minutes, once)"
    local jobs cuda_home
    jobs="$(nproc 2>/dev/null || echo 4)"
    cuda_home="$(dirname "$(dirname "$(readlink -f "$SAGE_NVCC")")")"  # nvcc is often a symlink
    if pip_install -c "$TORCH_PIN" setuptools wheel packaging ninja &&
        CUDA_HOME="$cuda_home" TORCH_CUDA_ARCH_LIST="$SAGE_ARCHS" EXT_PARALLEL=2 MAX_JOBS="$jobs" \
            pip_install --no-build-isolation -c "$TORCH_PIN" "sageattention @ $SAGE_SOURCE"; then
        return 0
    fi
    log "sageattention did not build; Turbo uses the bundled Triton 8-bit attention instead"
    SAGE_FAILED=1
}

main() {
    parse_args "$@"
    local python
    python="$(find_python)"
    choose_torch "$python"
    if ((DRY_RUN)); then
        print_choice "$python"
        return
    fi
    ensure_venv "$python"
    TORCH_PIN="$VENV/torch-constraint.txt"
    local key
    key="$(stamp_key "$MODE")"
    if ((UPDATE == 0)) && [[ -f "$(stamp_file "$MODE")" && "$(cat "$(stamp_file "$MODE")")" == "$key" ]]; then
        log "up to date ($TORCH_CHOICE)"
        return
    fi
    log "torch: $TORCH_CHOICE"
    install_torch
    local requirements="$ROOT/requirements.txt"
    if [[ "$MODE" == test ]]; then requirements="$ROOT/requirements-test.txt"; fi
    pip_install -c "$TORCH_PIN" -r "$requirements"
    install_flash_attn
    install_sage
    key="$(stamp_key "$MODE")"
    echo "$key" >"$(stamp_file "$MODE")"
    if [[ "$MODE" == test ]]; then stamp_key runtime >"$(stamp_file runtime)"; fi
    log "done ($TORCH_CHOICE)"
}

main "$@"
