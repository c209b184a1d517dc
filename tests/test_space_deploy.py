"""The Space build: README.md with Space front matter over the project's README, and every tracked file."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from installer.space import build_space, pinned_gradio, read_front_matter, space_readme

ROOT = Path(__file__).resolve().parents[1]
SPACE_KEYS = {"title", "emoji", "sdk", "sdk_version", "app_file", "python_version", "suggested_hardware"}


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("space") / "out"
    result = subprocess.run(
        [sys.executable, "-m", "installer.space", str(dest)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "hf upload USER/NAME" in result.stdout
    return dest


def test_project_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[2] == "```bash" and lines[5] == "```"
    assert lines[3].startswith("bash installer/run.sh ") and lines[4].startswith("bash installer/test.sh ")


def test_space_readme_has_the_config_and_then_the_project_readme(space: Path) -> None:
    config, rest = read_front_matter((space / "README.md").read_text(encoding="utf-8"))
    assert config.keys() >= SPACE_KEYS
    assert config["sdk"] == "gradio"
    assert config["hf_oauth"] is False
    assert config["python_version"] == "3.10"
    assert config["suggested_hardware"] == "zero-a10g"
    assert (space / config["app_file"]).read_text() == (ROOT / "app.py").read_text()
    assert config["sdk_version"] == version("gradio")
    assert rest == "\n" + (ROOT / "README.md").read_text(encoding="utf-8")


def test_space_sdk_version_satisfies_the_requirements_it_installs(space: Path) -> None:
    config, _ = read_front_matter((space / "README.md").read_text(encoding="utf-8"))
    lines = [line.split("#")[0].strip() for line in (space / "requirements.txt").read_text().splitlines()]
    gradio = next(Requirement(line) for line in lines if line.startswith("gradio"))
    assert gradio.specifier.contains(config["sdk_version"])
    assert any(line.startswith("torch") for line in lines)  # the Space installs torch from here


def test_space_holds_every_tracked_file(space: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    present = [name for name in tracked if (ROOT / name).is_file()]
    for name in present:
        assert (space / name).is_file(), name
        if name != "README.md":
            assert (space / name).read_bytes() == (ROOT / name).read_bytes(), name


def test_a_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not empty"):
        build_space(tmp_path, sdk_version="6.0.0")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_fresh_clone_of_the_space_is_filled(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    names = build_space(tmp_path, sdk_version="6.0.0")
    assert "app.py" in names and (tmp_path / "core" / "space.py").is_file()
    config, _ = read_front_matter((tmp_path / "README.md").read_text(encoding="utf-8"))
    assert config["sdk_version"] == "6.0.0"


def test_gradio_outside_the_requirements_is_refused(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("torch>=2.4\ngradio>=99  # far future\n")
    with pytest.raises(SystemExit, match=r"requirements\.txt asks for gradio>=99"):
        pinned_gradio(tmp_path)


def test_readme_without_front_matter_is_reported() -> None:
    with pytest.raises(ValueError, match="front matter"):
        read_front_matter("# Video Studio\n")
    config, rest = read_front_matter(space_readme("# Hi\n", "6.0.0"))
    assert config["sdk_version"] == "6.0.0" and rest == "\n# Hi\n"
