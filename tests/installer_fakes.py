"""Fakes the installer tests share: a stand-in nvidia-smi and nvcc, dry runs of install.sh, and a copy of
the installer whose functions a test can call."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "installer" / "install.sh"
RUN = ROOT / "installer" / "run.sh"
RUN_PS1 = ROOT / "installer" / "run.ps1"
SHELL_SCRIPTS = [*sorted((ROOT / "installer").glob("*.sh")), ROOT / ".ci" / "run"]

SMI_TABLE = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.65.06              Driver Version: {driver}      CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
"""


def shellcheck_binary() -> str | None:
    return shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")


def write_script(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def fake_nvidia_smi(folder: Path, cuda: str, compute_cap: str = "9.0", gpus: int = 1) -> Path:
    """A stand-in `nvidia-smi` answering -L, the compute_cap query and the plain table."""
    folder.mkdir(parents=True, exist_ok=True)
    listing = "".join(f"GPU {i}: NVIDIA Test GPU (UUID: GPU-{i})\\n" for i in range(gpus))
    caps = "".join(f"{compute_cap}\\n" for _ in range(gpus))
    table = SMI_TABLE.format(driver="580.65.06", cuda=cuda)
    body = (
        'case "$1" in\n'
        f"  -L) printf '{listing}' ;;\n"
        f"  --query-gpu=compute_cap) printf '{caps}' ;;\n"
        f"  *) cat <<'EOF'\n{table}EOF\n ;;\n"
        "esac\n"
    )
    write_script(folder, "nvidia-smi", body)
    return folder


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dry_run(
    *args: str, fake_bin: Path | None = None, index_base: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if fake_bin is not None:
        env["PATH"] = f"{fake_bin}{os.pathsep}{env['PATH']}"
    env["TORCH_INDEX_BASE"] = index_base or f"http://127.0.0.1:{closed_port()}"
    return subprocess.run(
        ["bash", str(INSTALL), "--dry-run", *args], env=env, capture_output=True, text=True, timeout=60
    )


def torch_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("torch install:"))


def copy_installer(root: Path) -> Path:
    """A checkout at ``root`` holding only the installer and the requirement files; returns its install.sh."""
    (root / "installer").mkdir(parents=True)
    shutil.copy2(INSTALL, root / "installer" / "install.sh")
    for name in ("requirements.txt", "requirements-test.txt"):
        shutil.copy2(ROOT / name, root / name)
    return root / "installer" / "install.sh"


def sourced(install: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by bash after sourcing ``install`` (its functions and settings; main does not run)."""
    env = {**os.environ, "TEST_PYTHON": sys.executable}  # stands in for the venv's Python
    command = ["bash", "-c", f'source "$1"\nVENV_PY="$TEST_PYTHON"\n{script}', "bash", str(install)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def fake_nvcc(folder: Path, release: str) -> Path:
    write_script(folder, "nvcc", f"echo 'Cuda compilation tools, release {release}, V{release}.88'\n")
    return folder


def sage_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("sageattention:"))


def plan_line(result: subprocess.CompletedProcess[str], prefix: str) -> str:
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith(prefix))


@pytest.fixture(autouse=True)
def no_nvcc_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own NVCC must not steer the installer's choice in these tests."""
    monkeypatch.delenv("NVCC", raising=False)
