#!/usr/bin/env bash
# Sets up .venv in the repository root: a Python 3.10-3.12 virtual environment with the torch build that
# fits this machine (CUDA wheel matched to the NVIDIA driver and GPUs, CPU wheel otherwise; macOS on Apple
# silicon runs on the CPU, Intel Macs are refused), then the project's requirements. Re-running is fast: a
# stamp in .venv skips pip while nothing changed (this script is part of the stamp).
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
# GPUs of compute capability 8.9+ get torchao (Turbo's fp8 linears), 9.x/10.x flash-attn-4. On those of 8.0+
# with a CUDA compiler (nvcc) whose major version matches the torch build, SageAttention 2 (Turbo's fastest
# 8-bit attention) is built from source for those GPUs (a few minutes, once). Without nvcc the installer says
# so and Turbo uses the bundled Triton kernel. A failed build is retried only with --update, another nvcc or
# another torch.
set -euo pipefail

TORCH_CPU_VERSION="2.13.0"  # CPU build taken from local wheels when the CPU wheel index is unreachable
TORCH_INDEX_BASE="${TORCH_INDEX_BASE:-https://download.pytorch.org/whl}"
PROBE_TIMEOUT_S=5
SAGE_SOURCE="git+https://github.com/thu-ml/SageAttention.git@d1a57a546c3d395b1ffcbeecc66d81db76f3b4b5"
# flash-attn-4 has only betas: pin the one bench/wheels.sh measured, with its CuTe DSL and quack kernels.
FA4_SPEC="flash-attn-4==4.0.0b36"
CUTLASS_DSL_VERSION="4.8.1"
QUACK_SPEC="quack-kernels==0.6.5"
# torchao 0.17+ is built for torch 2.11+ (benchmarked: 0.17.0 with 2.11); the newest release matches the
# newest torch, which this script installs alongside it (and --update upgrades both).
TORCHAO_SPEC="torchao>=0.17"
TORCHAO_MIN_TORCH="2.11"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VENV_PY="$VENV/bin/python"
PYTHON_CHECK='import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 12); print(sys.executable)'
SAGE_FAILED_FILE="$VENV/.sage-failed"  # what a failed SageAttention build was tried with

MODE="runtime"
UPDATE=0
DRY_RUN=0
FORCE_CPU=0
TORCH_CHOICE=""  # human-readable label, set by choose_torch
TORCH_ARGS=()    # pip arguments that install that torch, set by choose_torch
TORCH_PIN=""     # constraints file holding the installed torch version, set in main
TORCH_BUILD=""   # the build itself (cpu, macos, cu130, ...): a change of it replaces the installed torch
WANT_FA4=0       # 1 when the GPUs can use flash-attn-4 (compute capability 9.x or 10.x)
FA4_ARGS=()      # pip arguments that install it for this torch build, set by choose_torch
WANT_TORCHAO=0   # 1 when a GPU can run fp8 linears (compute capability 8.9+)
SAGE_ARCHS=""    # compute capabilities to build SageAttention for (8.0+), e.g. "9.0"; empty: no build
SAGE_NVCC=""     # the nvcc that builds it
SAGE_CHOICE=""   # human-readable reason for building it or not

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

# torch.compile's C++ builds (inductor on the CPU) split their include and library paths at spaces.
warn_on_spaces() {
    if [[ "$ROOT" == *" "* ]]; then
        log "warning: the project path '$ROOT' holds a space, so compiling on the CPU (the compile option) \
fails there. Move the project to a path without spaces to use it."
    fi
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

# Whether a compute capability listed in $1 (one a line, e.g. "8.6") is at least $3 (op ge) or below it (lt).
caps_match() {
    awk -F. -v op="$2" -v cap="$3" '
        BEGIN { split(cap, c, "."); want = c[1] * 100 + c[2] }
        NF == 2 { have = $1 * 100 + $2 }
        NF == 2 && ((op == "ge" && have >= want) || (op == "lt" && have < want)) { found = 1 }
        END { exit !found }' <<<"$1"
}

# Sets FA4_ARGS: flash-attn-4 and the CuTe DSL build (CUDA 13 libraries on cu130) for torch build $1.
choose_fa4() {
    local dsl="nvidia-cutlass-dsl"
    if [[ "$1" == cu13* ]]; then dsl+="[cu13]"; fi
    FA4_ARGS=("$FA4_SPEC" "$dsl==$CUTLASS_DSL_VERSION" "$QUACK_SPEC")
}

# Refuses Intel Macs: PyTorch has no x86_64 macOS wheels after torch 2.2, and requirements.txt needs 2.4+.
check_mac() {
    if [[ "$(uname -m)" == x86_64 ]]; then
        die "Intel Macs are not supported: PyTorch publishes no x86_64 macOS wheels after torch 2.2 and this \
app needs torch 2.4+. Use a Mac with Apple silicon (with a native arm64 Python, not one under Rosetta), \
Linux or Windows."
    fi
}

cpu_index_reachable() {
    "$1" - "$TORCH_INDEX_BASE/cpu/" "$PROBE_TIMEOUT_S" >/dev/null 2>&1 <<'EOF'
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).close()
EOF
}

# Sets TORCH_CHOICE, TORCH_ARGS, TORCH_BUILD, WANT_FA4, FA4_ARGS and WANT_TORCHAO for this machine.
choose_torch() {
    local python="$1" gpus version tag caps
    WANT_FA4=0
    WANT_TORCHAO=0
    if [[ "$(uname -s)" == Darwin ]]; then
        check_mac
        TORCH_CHOICE="macos (CPU; no Apple GPU support)"
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
        caps="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null || true)"
        TORCH_CHOICE="cuda $tag (driver CUDA $version, $gpus GPU(s))"
        # PyTorch's CUDA 12.8+ builds have no kernels for Maxwell, Pascal or Volta (compute capability < 7.5).
        if [[ "$tag" != cu126 ]] && caps_match "$caps" lt 7.5; then
            tag="cu126"
            TORCH_CHOICE="cuda $tag (a GPU below compute capability 7.5; driver CUDA $version, $gpus GPU(s))"
        fi
        TORCH_ARGS=(torch --index-url "$TORCH_INDEX_BASE/$tag")
        TORCH_BUILD="$tag"
        if grep -qE '^ *(9|10)\.' <<<"$caps"; then
            WANT_FA4=1
            choose_fa4 "$tag"
        fi
        if caps_match "$caps" ge 8.9; then WANT_TORCHAO=1; fi
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

# The CUDA release (e.g. 13.0) that nvcc $1 reports, or nothing.
nvcc_release() {
    local release
    release="$({ "$1" --version 2>/dev/null || true; } | sed -nE 's/.*release ([0-9]+\.[0-9]+).*/\1/p')"
    echo "${release%%$'\n'*}"
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
    release="$(nvcc_release "$nvcc")"
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
    if ((WANT_FA4)); then
        echo "flash-attn-4: yes"
        echo "flash-attn-4 install: pip install ${FA4_ARGS[*]}"
    else
        echo "flash-attn-4: no"
    fi
    if ((WANT_TORCHAO)); then
        echo "torchao: yes ($TORCHAO_SPEC, once torch is $TORCHAO_MIN_TORCH+)"
    else
        echo "torchao: no (needs a GPU of compute capability 8.9+)"
    fi
    echo "sageattention: ${SAGE_CHOICE:-no (no NVIDIA GPU, or the CPU build of torch)}"
}

ensure_venv() {
    local python="$1"
    if [[ -x "$VENV_PY" ]] && "$VENV_PY" -c "$PYTHON_CHECK; import pip" >/dev/null 2>&1; then
        return
    fi
    if [[ ! -w "$ROOT" ]]; then
        die "$ROOT is not writable, so $VENV can't be created there. Copy the project to a folder you can \
write to, or run as a user who can write to it."
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

# Hash of what an install depends on: interpreter, torch, flash-attn, torchao and SageAttention choices,
# requirements, and this script.
stamp_key() {
    local mode="$1"
    {
        python_version "$VENV_PY"
        echo "torch=$TORCH_BUILD fa4=$WANT_FA4 torchao=$WANT_TORCHAO"
        echo "sage=$SAGE_ARCHS:$SAGE_NVCC"
        cat "$ROOT/installer/install.sh"
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
    # Read from the package metadata: importing torch before numpy is installed prints torch's
    # "Failed to initialize NumPy" warning (the CPU wheel is installed without its dependencies).
    "$VENV_PY" -c 'from importlib.metadata import version; print("torch==" + version("torch"))' >"$TORCH_PIN"
}

install_flash_attn() {
    ((WANT_FA4)) || return 0
    log "installing flash-attn-4 (optional)"
    pip_install -c "$TORCH_PIN" "${FA4_ARGS[@]}" ||
        log "flash-attn-4 did not install; the app falls back to PyTorch attention"
}

# Whether version $1 (e.g. 2.13.0+cu130) is at least major.minor $2 (e.g. 2.11).
version_at_least() {
    local major minor want_major want_minor
    IFS=. read -r major minor _ <<<"$1"
    IFS=. read -r want_major want_minor <<<"$2"
    ((major * 100 + minor >= want_major * 100 + want_minor))
}

install_torchao() {
    ((WANT_TORCHAO)) || return 0
    local torch_version
    torch_version="$(sed 's/^torch==//' "$TORCH_PIN")"
    if ! version_at_least "$torch_version" "$TORCHAO_MIN_TORCH"; then
        log "torchao: no (torch $torch_version is older than $TORCHAO_MIN_TORCH; --update upgrades it)"
        return 0
    fi
    log "installing torchao (Turbo's fp8 linears)"
    pip_install -c "$TORCH_PIN" "$TORCHAO_SPEC" ||
        log "torchao did not install; Turbo runs without fp8 linears"
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
        rm -f "$SAGE_FAILED_FILE"
        return 0
    fi
    log "sageattention did not build; Turbo uses the bundled Triton 8-bit attention instead (tried again \
with --update, another nvcc or another torch)"
    sage_signature >"$SAGE_FAILED_FILE"
    SAGE_ARCHS=""
}

# What a SageAttention build was tried with besides the GPUs: the nvcc (path, release) and the torch.
sage_signature() {
    local torch
    torch="$(cat "$TORCH_PIN" 2>/dev/null || true)"
    echo "nvcc=$SAGE_NVCC ($(nvcc_release "$SAGE_NVCC")) build=$TORCH_BUILD $torch"
}

# Leaves out a SageAttention build that failed with this nvcc and torch before, unless --update.
skip_failed_sage() {
    if ((UPDATE == 0)) && [[ -n "$SAGE_ARCHS" && -f "$SAGE_FAILED_FILE" ]] &&
        [[ "$(cat "$SAGE_FAILED_FILE")" == "$(sage_signature)" ]]; then
        SAGE_ARCHS=""
        SAGE_CHOICE="no (its build failed before with this nvcc and torch; --update tries again)"
    fi
}

main() {
    parse_args "$@"
    warn_on_spaces
    local python
    python="$(find_python)"
    choose_torch "$python"
    if ((DRY_RUN)); then
        print_choice "$python"
        return
    fi
    ensure_venv "$python"
    TORCH_PIN="$VENV/torch-constraint.txt"
    skip_failed_sage
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
    install_torchao
    install_sage
    key="$(stamp_key "$MODE")"
    echo "$key" >"$(stamp_file "$MODE")"
    if [[ "$MODE" == test ]]; then stamp_key runtime >"$(stamp_file runtime)"; fi
    log "done ($TORCH_CHOICE)"
}

# Run, not sourced (tests source it to call single functions).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
