"""Command line: ``python -m weights list`` / ``download MODEL`` / ``delete MODEL``.

python -m weights list --models-dir /data/models
python -m weights download wan2.1-t2v-1.3b          # resumes if a previous run was interrupted
python -m weights download wan2.1-t2v-1.3b --offline # only checks that it is in place
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.model_store import ensure_model
from core.settings import Settings
from core.validation import ConfigError
from weights.download import DownloadError
from weights.progress import DownloadProgress
from weights.registry import get_card
from weights.store import delete_model, list_models

PRINT_EVERY_S = 1.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--models-dir", type=Path, default=Settings().models_dir, help="where weights are kept"
    )
    common.add_argument("--offline", action="store_true", help="make no network call (also HF_HUB_OFFLINE=1)")
    common.add_argument("--dev", action="store_true", help="include the tiny test models")
    parser = argparse.ArgumentParser(
        prog="python -m weights", description="List, download and delete model weights."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common], help="every model with its state and size on disk")
    for name, text in (("download", "download (or resume) a model"), ("delete", "delete a model's folder")):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("model", help="model id, see `list`")
    return parser.parse_args(argv)


class LinePrinter:
    """Prints download progress at most once a second (and always the last line)."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, progress: DownloadProgress) -> None:
        now = time.monotonic()
        if now - self.last >= PRINT_EVERY_S or progress.stage == "ready":
            self.last = now
            print(progress.describe(), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(models_dir=args.models_dir, offline=args.offline)
    try:
        if args.command == "list":
            rows = list_models(settings, dev=args.dev)
            width = max(len(r.card_id) for r in rows)
            print(
                f"{'MODEL':<{width}}  {'STATE':<7}  {'ON DISK':>10}  {'DOWNLOAD':>13}  {'NEEDS':<17}  FOLDER"
            )
            for row in rows:
                card = get_card(row.card_id)
                sizes = f"{row.size_label:>10}  {card.download_label:>13}  {card.hardware_label:<17}"
                print(f"{row.card_id:<{width}}  {row.state:<7}  {sizes}  {row.folder or ''}")
        elif args.command == "download":
            folder = ensure_model(get_card(args.model), settings, on_progress=LinePrinter())
            print(f"ready: {folder}")
        else:
            freed = delete_model(get_card(args.model), settings)
            print(f"deleted {args.model} ({freed} bytes freed)")
    except (ConfigError, DownloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
