"""Build a folder that runs as a Hugging Face Space: ``python -m installer.space DEST``.

A Space reads its configuration only from YAML front matter at the top of the root ``README.md``; the
project's README must start with its two commands instead. So the Space is built, not kept: DEST gets
every tracked file (``git ls-files``) and a README.md whose front matter (sdk gradio at the version
tested here, app_file app.py, ZeroGPU suggested) precedes the project's README unchanged. Push DEST with
``hf upload USER/NAME DEST . --repo-type space`` or as a git checkout of the Space.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def space_config(sdk_version: str) -> dict[str, Any]:
    """The Space's settings (keys of the Spaces configuration reference)."""
    return {
        "title": "Video Studio",
        "emoji": "🎬",
        "colorFrom": "indigo",
        "colorTo": "purple",
        "sdk": "gradio",
        "sdk_version": sdk_version,
        "app_file": "app.py",
        "python_version": "3.10",  # the Python that ZeroGPU runs
        "suggested_hardware": "zero-a10g",
        "hf_oauth": False,
        "short_description": "Text to video, continuation and upscaling",
        "pinned": False,
    }


def pinned_gradio(root: Path = ROOT) -> str:
    """The installed Gradio version, checked against requirements.txt (the Space installs both)."""
    installed = version("gradio")
    for line in (root / "requirements.txt").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text and Requirement(text).name == "gradio":
            if not Requirement(text).specifier.contains(installed, prereleases=True):
                raise SystemExit(f"gradio {installed} is installed but requirements.txt asks for {text}")
            return installed
    raise SystemExit("requirements.txt names no gradio version")


def space_readme(readme: str, sdk_version: str) -> str:
    """``readme`` with the Space's front matter in front of it."""
    header = yaml.safe_dump(space_config(sdk_version), sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n\n{readme}"


def read_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """The front matter of a Space README as a mapping, and the text after it."""
    match = FRONT_MATTER.match(text)
    if match is None:
        raise ValueError("no YAML front matter at the top")
    return yaml.safe_load(match.group(1)), text[match.end() :]


def space_files(root: Path = ROOT) -> list[str]:
    """Every tracked file (relative paths), so a clone of the Space is the whole project."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"{root} must be a git checkout (git ls-files failed: {exc})") from None
    names = [name for name in listed.split("\0") if name]
    return [name for name in names if (root / name).is_file()]


def build_space(dest: Path, root: Path = ROOT, sdk_version: str | None = None) -> list[str]:
    """Fill ``dest`` (missing, empty, or holding only ``.git``) with the Space; returns the files written."""
    if dest.exists() and any(entry.name != ".git" for entry in dest.iterdir()):
        raise SystemExit(f"{dest} is not empty: give a new folder or a fresh clone of the Space")
    names = space_files(root)
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    readme = (root / "README.md").read_text(encoding="utf-8")
    sdk = sdk_version or pinned_gradio(root)
    (dest / "README.md").write_text(space_readme(readme, sdk), encoding="utf-8")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m installer.space", description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path, help="folder to write the Space into (new, or a fresh clone)")
    parser.add_argument("--sdk-version", help="Gradio version for the Space (default: the installed one)")
    args = parser.parse_args(argv)
    names = build_space(args.dest, sdk_version=args.sdk_version)
    print(f"Space written to {args.dest} ({len(names)} files). Upload it with:")
    print(f"  hf upload USER/NAME {args.dest} . --repo-type space")


if __name__ == "__main__":
    main(sys.argv[1:])
