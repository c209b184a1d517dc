"""Installer choices for NVIDIA GPUs (dry runs on faked hardware): SageAttention's build, the pinned
FlashAttention-4, torchao for Turbo, and the CUDA build for GPUs before Turing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.installer_fakes import (
    copy_installer,
    dry_run,
    fake_nvcc,
    fake_nvidia_smi,
    no_nvcc_override,  # noqa: F401 (autouse)
    plan_line,
    sage_line,
    sourced,
    torch_line,
    write_script,
)


@pytest.mark.parametrize(
    ("compute_cap", "built"), [("9.0", True), ("8.9", True), ("12.0", True), ("10.0", False), ("7.5", False)]
)
def test_sage_attention_builds_where_nvcc_matches_the_torch_cuda(
    tmp_path: Path, compute_cap: str, built: bool
) -> None:
    fake_bin = fake_nvcc(fake_nvidia_smi(tmp_path, "13.0", compute_cap=compute_cap, gpus=2), "13.0")
    line = sage_line(dry_run(fake_bin=fake_bin))
    if built:
        assert (
            line
            == f"sageattention: build for compute capability {compute_cap} with {fake_bin}/nvcc (CUDA 13.0)"
        )
    else:
        assert line.startswith("sageattention: no (no GPU SageAttention has kernels for")


def test_sage_attention_is_skipped_with_a_reason_for_a_mismatched_nvcc(tmp_path: Path) -> None:
    fake_bin = fake_nvcc(fake_nvidia_smi(tmp_path, "12.8"), "13.0")
    line = sage_line(dry_run(fake_bin=fake_bin))
    assert line.startswith(f"sageattention: no ({fake_bin}/nvcc is CUDA 13.0, torch is built for cu128")


def test_sage_attention_needs_a_cuda_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVCC", "none")  # as on a machine without one, whatever this machine has
    line = sage_line(dry_run(fake_bin=fake_nvidia_smi(tmp_path, "13.0")))
    assert line == (
        "sageattention: no (no CUDA compiler (nvcc) found; Turbo uses the bundled Triton 8-bit attention)"
    )
    assert sage_line(dry_run("--cpu", fake_bin=tmp_path)).startswith("sageattention: no (no NVIDIA GPU")
    monkeypatch.setenv("NVCC", str(tmp_path / "missing-nvcc"))  # a bad override: said, not a crash
    assert sage_line(dry_run(fake_bin=tmp_path)).startswith("sageattention: no (no CUDA compiler")


@pytest.mark.parametrize(
    ("cuda", "dsl"), [("13.0", "nvidia-cutlass-dsl[cu13]"), ("12.8", "nvidia-cutlass-dsl")]
)
def test_flash_attn_4_is_the_pinned_benchmarked_beta(tmp_path: Path, cuda: str, dsl: str) -> None:
    for compute_cap in ("9.0", "10.0"):
        result = dry_run(fake_bin=fake_nvidia_smi(tmp_path / compute_cap, cuda, compute_cap=compute_cap))
        assert plan_line(result, "flash-attn-4 install:") == (
            f"flash-attn-4 install: pip install flash-attn-4==4.0.0b36 {dsl}==4.8.1 quack-kernels==0.6.5"
        )


@pytest.mark.parametrize(
    ("compute_cap", "wanted"), [("9.0", True), ("8.9", True), ("12.0", True), ("8.6", False)]
)
def test_torchao_only_for_gpus_with_fp8_matmuls(tmp_path: Path, compute_cap: str, wanted: bool) -> None:
    line = plan_line(dry_run(fake_bin=fake_nvidia_smi(tmp_path, "13.0", compute_cap=compute_cap)), "torchao:")
    assert line.startswith("torchao: yes (torchao>=0.17" if wanted else "torchao: no")


def test_no_torchao_on_the_cpu(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path, "13.0", compute_cap="9.0")
    assert plan_line(dry_run("--cpu", fake_bin=tmp_path), "torchao:").startswith("torchao: no")
    write_script(tmp_path, "nvidia-smi", "exit 9\n")
    assert plan_line(dry_run(fake_bin=tmp_path), "torchao:").startswith("torchao: no")


@pytest.mark.parametrize(
    ("cuda", "compute_cap", "tag"),
    [("13.0", "6.1", "cu126"), ("12.8", "7.0", "cu126"), ("13.0", "7.5", "cu130")],
)
def test_gpus_before_turing_get_the_cu126_build(
    tmp_path: Path, cuda: str, compute_cap: str, tag: str
) -> None:
    base = "https://download.pytorch.org/whl"
    result = dry_run(fake_bin=fake_nvidia_smi(tmp_path, cuda, compute_cap=compute_cap), index_base=base)
    assert torch_line(result) == f"torch install: pip install torch --index-url {base}/{tag}"


def test_an_old_driver_is_refused_for_a_pascal_gpu_too(tmp_path: Path) -> None:
    result = dry_run(fake_bin=fake_nvidia_smi(tmp_path, "12.4", compute_cap="6.1"))
    assert result.returncode != 0
    assert "Update the NVIDIA driver" in result.stderr


def test_torchao_is_installed_within_the_torch_constraint(tmp_path: Path) -> None:
    install = copy_installer(tmp_path)
    script = (
        'pip_install() { echo "pip install $*"; }\n'
        'WANT_TORCHAO=1 TORCH_PIN="$1.pin"\n'
        'echo "torch==2.11.0+cu130" >"$TORCH_PIN" && install_torchao\n'
        'echo "torch==2.10.0+cu128" >"$TORCH_PIN" && install_torchao\n'
    )
    result = sourced(install, script)
    assert result.stdout == f"pip install -c {install}.pin torchao>=0.17\n"
    assert "torchao: no (torch 2.10.0+cu128 is older than 2.11; --update upgrades it)" in result.stderr


SAGE_RUN = """\
TORCH_PIN="$VENV/torch-constraint.txt" TORCH_BUILD=cu130 SAGE_NVCC="$(command -v nvcc)"
mkdir -p "$VENV" && echo "torch==2.13.0+cu130" >"$TORCH_PIN"
pip_install() { return 1; }  # the build fails
SAGE_ARCHS=9.0 && install_sage
echo "stamp after the failure: $(stamp_key runtime)"
SAGE_ARCHS=9.0 && skip_failed_sage  # the next run
echo "stamp on the next run: $(stamp_key runtime)"
echo "next run builds: ${SAGE_ARCHS:-no}"
SAGE_ARCHS=9.0 UPDATE=1 && skip_failed_sage && UPDATE=0
echo "with --update: ${SAGE_ARCHS:-no}"
echo "torch==2.14.0+cu130" >"$TORCH_PIN" && SAGE_ARCHS=9.0 && skip_failed_sage
echo "with another torch: ${SAGE_ARCHS:-no}"
echo "torch==2.13.0+cu130" >"$TORCH_PIN" && SAGE_ARCHS=9.0 && skip_failed_sage
echo "with the same torch again: ${SAGE_ARCHS:-no}"
printf '#!/bin/sh\\necho "release 13.1, V13.1.80"\\n' >"$SAGE_NVCC" && SAGE_ARCHS=9.0 && skip_failed_sage
echo "with another nvcc: ${SAGE_ARCHS:-no}"
pip_install() { return 0; }  # the build succeeds
install_sage && echo "marker after a success: $(ls "$SAGE_FAILED_FILE" 2>/dev/null || echo gone)"
"""


def test_a_failed_sage_attention_build_is_retried_only_when_something_changed(tmp_path: Path) -> None:
    install = copy_installer(tmp_path / "repo")
    fake_nvcc(tmp_path, "13.0")
    env_path = f"PATH={tmp_path}{os.pathsep}$PATH\n"
    lines = sourced(install, env_path + SAGE_RUN).stdout.splitlines()
    after, following = (line.rsplit(" ", 1)[1] for line in lines[:2])
    assert after == following  # so the next run is "up to date" instead of rebuilding
    assert lines[2:] == [
        "next run builds: no",
        "with --update: 9.0",
        "with another torch: 9.0",
        "with the same torch again: no",
        "with another nvcc: 9.0",
        "marker after a success: gone",
    ]
