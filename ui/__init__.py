"""Gradio layout and event wiring. No generation logic lives here: it calls core.studio.Studio."""
