"""Wiring of remembered settings (kept in the visitor's browser) and of "Use these settings again": the
facade decides what is kept and what a record fills; this module only moves values in and out."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.facade import Facade
from ui.jobs import JOB_FORMS, JobForm, load_form


def job_forms(demo: gr.Blocks) -> dict[str, JobForm]:
    """The app's job tabs, by API name (``t2v``, ``i2v``, ``continue``, ``upscale``, ``long_video``)."""
    return JOB_FORMS.get(demo, {})


def components(forms: dict[str, JobForm]) -> list[Any]:
    """Every field of every job tab, once."""
    found: dict[int, Any] = {}
    for form in forms.values():
        found |= {component._id: component for component in form.fields.values()}
    return list(found.values())


def wire_settings_memory(facade: Facade, demo: gr.Blocks) -> gr.BrowserState:
    """Each tab's settings are stored in the browser when it starts a job, and loaded with the page."""
    forms = job_forms(demo)
    stored = gr.BrowserState({}, storage_key=facade.memory.storage_key, secret=facade.memory.storage_secret)
    for task, form in forms.items():

        def store(saved: Any, *values: Any, task: str = task, form: JobForm = form) -> dict[str, Any]:
            return facade.memory.store(saved, task, dict(zip(form.inputs, values, strict=True)))

        form.start.click(store, [stored, *form.inputs.values()], stored, api_name=False, queue=False)

    def restore(saved: Any) -> dict[Any, Any]:
        updates: dict[Any, Any] = {}
        for task, form in forms.items():
            props, _dropped = facade.memory.restore(task, saved)
            updates |= load_form(form.fields, props)
        return updates

    demo.load(restore, stored, components(forms), api_name=False, queue=False)
    return stored


def wire_rerun_fill(facade: Facade, demo: gr.Blocks, events: list[Any], form: gr.JSON, tabs: gr.Tabs) -> None:
    """After each of ``events`` put a rerun form (``{"tab", "values", "notes"}``) into ``form``, switch to
    its tab and fill it."""
    forms = job_forms(demo)

    def fill(chosen: dict[str, Any] | None) -> dict[Any, Any]:
        if not chosen or chosen.get("tab") not in forms:
            return {}
        for note in chosen.get("notes") or ():
            gr.Warning(note)
        tab = chosen["tab"]
        props = facade.memory.fill(tab, chosen.get("values") or {})
        return {tabs: gr.Tabs(selected=tab)} | load_form(forms[tab].fields, props)

    for event in events:
        event.then(fill, form, [tabs, *components(forms)], api_name=False)
