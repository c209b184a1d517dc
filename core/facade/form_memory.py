"""The facade's side of remembered settings and "Use these settings again": what a tab's components
become (field properties by name) for stored settings or for a past result's request."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from core.facade import memory, rerun
from core.history import find_result
from core.validation import ConfigError

Props = dict[str, dict[str, Any]]

FILE_FIELDS = ("video_path", "image_path", "end_image_path")
"""Form values that name an input file (gone when Gradio's upload cache was swept)."""


class FormMemory:
    """Settings memory and rerun-to-form for one studio's tabs.

    ``inputs(task)`` and ``form(task, model_id)`` are the facade's start-up fields and per-model fields."""

    storage_key = memory.STORAGE_KEY
    storage_secret = memory.STORAGE_SECRET

    def __init__(
        self,
        inputs: Callable[[str], Props],
        form: Callable[[str, str | None], Props],
        outputs_dir: Path,
    ) -> None:
        self.inputs, self.form, self.outputs_dir = inputs, form, Path(outputs_dir)

    def fill(self, task: str, values: Mapping[str, Any]) -> Props:
        """Component properties that put ``values`` into the tab ``task``: the chosen model's form (its
        choices, limits, what is shown) with the values over it."""
        props = {name: dict(p) for name, p in self.form(task, values.get("model_id")).items()}
        for name, value in values.items():
            props.setdefault(name, {})["value"] = value
        return props

    def restore(self, task: str, stored: Any) -> tuple[Props, list[str]]:
        """The tab's remembered settings as properties to load (else the opening model's form, so the page
        starts with its limits), and the stale names dropped."""
        kept, dropped = memory.restore(task, stored, self.inputs(task), lambda m: self.form(task, m))
        if kept:
            return self.fill(task, kept), dropped
        opening = self.inputs(task).get("model_id", {}).get("value")  # nothing kept: the opening model's form
        return (dict(self.form(task, opening)) if opening else {}), dropped

    def store(self, stored: Any, task: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """The browser's stored settings after the tab ``task`` ran with ``values``."""
        return memory.update_stored(stored, task, values)

    def rerun_form(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``{"tab", "values", "notes"}``: the tab and form values that make ``record``'s request again;
        input files that are gone are left empty, with a note to pick them again."""
        tab, values = rerun.request_form(record["request"])
        notes = []
        for name in FILE_FIELDS:
            path = values.get(name)
            if path and not Path(path).is_file():
                values[name] = None
                notes.append(f"The input file {Path(path).name} is no longer there; pick it again.")
        return {"tab": tab, "values": values, "notes": notes}

    def rerun_result(self, path: str | Path) -> dict[str, Any]:
        """``rerun_form`` of a result in the outputs folder (History's selection)."""
        try:
            entry = find_result(self.outputs_dir, self.outputs_dir / path)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        return self.rerun_form(entry.record)

    def rerun_file(self, path: str | Path | None) -> dict[str, Any]:
        """``rerun_form`` of a dropped mp4 made by this app (its embedded record) or its sidecar JSON."""
        if not path:
            raise ConfigError("Drop an mp4 made by this app, or the .json beside it, first.")
        return self.rerun_form(rerun.read_file_record(path))
