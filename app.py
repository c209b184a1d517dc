"""Video Studio: ``python app.py --help`` lists the flags."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from pathlib import Path

from core.parallel.config import parse_parallel_flag
from core.settings import Settings
from core.validation import ConfigError

log = logging.getLogger("video-studio")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Local video studio: text to video, continuation, upscaling."
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to listen on (default 127.0.0.1, or GRADIO_SERVER_NAME; 0.0.0.0 for the LAN)",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port to listen on (default 7860 or GRADIO_SERVER_PORT)"
    )
    parser.add_argument("--share", action="store_true", help="also serve through a public Gradio share link")
    parser.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="USER:PASS",
        help="require this login for the UI and the API (repeat for more users)",
    )
    parser.add_argument("--outputs", type=Path, default=Settings.outputs_dir, help="folder for videos")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Settings.models_dir,
        help="folder for model weights (the standard Hugging Face cache is searched too)",
    )
    parser.add_argument(
        "--loras-dir",
        type=Path,
        default=Settings.loras_dir,
        help="folder for LoRA files (.safetensors); LoRAs named by Hub repo or URL are downloaded here",
    )
    parser.add_argument("--offline", action="store_true", help="never download; use only local weights")
    parser.add_argument("--gpus", default=None, help="GPU indices to use, e.g. 0,1 (default: all visible)")
    parser.add_argument(
        "--parallel",
        type=parallel_modes,
        default=(),
        metavar="MODES",
        help="the modes a job split over several GPUs may use, e.g. cfg or cfg,cp (CFG + context "
        "parallel; the default); each job picks auto (split a big job alone on idle GPUs), one or split",
    )
    parser.add_argument("--dev", action="store_true", help="show the tiny test models")
    parser.add_argument(
        "--allow-dir",
        action="append",
        type=Path,
        default=[],
        metavar="FOLDER",
        help="a folder whose videos batch rows may name by path (repeat for more); without it rows may "
        "name only files uploaded with the batch or inside the outputs folder",
    )
    return parser.parse_args(argv)


def parallel_modes(text: str) -> tuple[str, ...]:
    """``--parallel`` modes, with the validation message shown as argparse's error."""
    try:
        return parse_parallel_flag(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_auth(pairs: list[str]) -> list[tuple[str, str]]:
    """USER:PASS strings as (user, password) pairs."""
    logins = []
    for pair in pairs:
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise SystemExit(f"--auth needs USER:PASS, got {pair!r}")
        logins.append((user, password))
    return logins


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (None: Gradio's default, 127.0.0.1 or ``GRADIO_SERVER_NAME``) is this machine only."""
    name = (host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1").strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str | None, share: bool, auth: list[tuple[str, str]]) -> str:
    """The warning for an app others can reach without a login ("" when it is protected or local)."""
    if auth:
        return ""
    if share:
        return "shared through a public link without --auth: anyone with the link can use this GPU"
    if not is_loopback(host):
        return (
            "listening beyond this machine without --auth: anyone who can reach it can use the GPU and "
            "list, download and delete every result; add --auth USER:PASS"
        )
    return ""


def parse_gpus(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SystemExit(f"--gpus needs indices such as 0,1; got {text!r}") from None


def launch_message(local_url: str | None, share_url: str | None) -> str:
    """Where the app is served, and how to share it (this app's --share flag, not Gradio's launch())."""
    if share_url:
        return f"Running on {local_url} and, publicly, on {share_url}"
    return (
        f"Running on {local_url} (open it in a browser; --share adds a public link, --help lists the flags)"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = Settings(
        outputs_dir=args.outputs.resolve(),
        models_dir=args.models_dir.resolve(),
        loras_dir=args.loras_dir.resolve(),
        offline=args.offline,
        dev=args.dev,
        gpus=parse_gpus(args.gpus),
        parallel=args.parallel,
        keep_queue=True,
        allowed_dirs=tuple(folder.resolve() for folder in args.allow_dir),
    )
    auth = parse_auth(args.auth)
    from core.memory.levels import configure_allocator

    configure_allocator()
    from starlette.middleware import Middleware

    from core.lineup import machine_lineup
    from core.stale_outputs import claim_outputs, clean_stale
    from core.studio import Studio
    from ui.app import build_app
    from ui.login_throttle import LoginThrottle

    _outputs_lock, alone = claim_outputs(settings.outputs_dir)  # held until the process ends
    for kept in clean_stale(settings.outputs_dir, alone):  # before the studio queues saved jobs again
        log.info("An interrupted job's frames were kept as %s", kept.name)
    studio = Studio(settings)
    log.info(studio.hardware.summary())
    lineup = machine_lineup(settings, studio.hardware, studio.space.is_space)
    if lineup.mode != "full":
        first = ", ".join(lineup.cards(task)[0].name for task in ("t2v", "continue", "upscale"))
        log.info(f"The tabs open on models that run here ({first}); the real ones stay in each tab's list.")
    warning = exposure_warning(args.host, args.share, auth)
    if warning:
        log.warning("\n%s\nWARNING: %s.\n%s", "!" * 78, warning, "!" * 78)
    demo = build_app(studio, warning=warning)
    try:
        demo.queue(default_concurrency_limit=16).launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            auth=auth or None,
            allowed_paths=[str(settings.outputs_dir)],
            show_error=True,  # what the handlers do not turn into gr.Error still reaches the user readably
            quiet=True,  # Gradio's own lines suggest share=True in launch(); ours name the flags
            prevent_thread_lock=True,
            app_kwargs={"middleware": [Middleware(LoginThrottle)]} if auth else None,
        )
        log.info(launch_message(demo.local_url, demo.share_url))
        demo.block_thread()
    finally:
        studio.shutdown()


if __name__ == "__main__":
    main()
