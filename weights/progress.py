"""Download progress: what the UI and the runner see while weights arrive; how cancel reaches a transfer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from core.cancel import JobCancelledError

REPORT_EVERY_S = 0.1


def human_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KB`` (powers of 1024, like the hubs' file listings)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def human_duration(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``."""
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class DownloadProgress:
    """One snapshot of a model download; byte counts are for the whole model, not only the current file."""

    file: str
    bytes_done: int
    bytes_total: int
    speed_bps: float
    eta_s: float | None
    stage: str = "downloading"
    source: str = ""
    file_index: int = 0
    file_count: int = 0

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 0.0

    def describe(self) -> str:
        """e.g. ``downloading vae/diffusion_pytorch_model.safetensors (3/9) · 1.2 GB/5.6 GB · 40.1 MB/s
        · ETA 1:50 · from huggingface``."""
        text = f"{self.stage} {self.file}".rstrip()
        if self.file_count:
            text += f" ({self.file_index}/{self.file_count})"
        text += f" · {human_bytes(self.bytes_done)}/{human_bytes(self.bytes_total)}"
        if self.speed_bps > 0:
            text += f" · {human_bytes(self.speed_bps)}/s"
        if self.eta_s is not None:
            text += f" · ETA {human_duration(self.eta_s)}"
        if self.source:
            text += f" · from {self.source}"
        return text


class ProgressMeter:
    """Counts bytes across a model's files, reports throttled :class:`DownloadProgress`, and polls cancel.

    Speed and ETA count only bytes moved in this run, so resumed bytes do not inflate the speed.
    """

    def __init__(
        self,
        bytes_total: int,
        file_count: int,
        on_progress: Callable[[DownloadProgress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        self.bytes_total = bytes_total
        self.file_count = file_count
        self.on_progress = on_progress
        self.should_cancel = should_cancel
        self.bytes_done = 0
        self.moved = 0
        self.started = time.monotonic()
        self.last_report = 0.0
        self.file = ""
        self.file_index = 0
        self.stage = "downloading"
        self.source = ""

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelledError` when the caller asked to stop."""
        if self.should_cancel is not None and self.should_cancel():
            raise JobCancelledError("download cancelled")

    def start_file(self, name: str, index: int, source: str, stage: str = "downloading") -> None:
        self.file, self.file_index, self.source, self.stage = name, index, source, stage
        self.report(force=True)

    def skip(self, count: int) -> None:
        """Bytes already on disk (a verified file, or the resumed head of a partial one)."""
        self.bytes_done += count
        self.report()

    def rewind(self, count: int) -> None:
        """Bytes thrown away (a corrupt file about to be fetched again)."""
        self.bytes_done -= count
        self.report(force=True)

    def resync(self, bytes_done: int) -> None:
        """Set the model-wide count from the file on disk (for clients that re-report resumed bytes)."""
        self.bytes_done = bytes_done

    def advance(self, count: int) -> None:
        """Bytes that just arrived over the network; polls cancel."""
        self.bytes_done += count
        self.moved += count
        self.check_cancelled()
        self.report()

    def snapshot(self) -> DownloadProgress:
        elapsed = time.monotonic() - self.started
        speed = self.moved / elapsed if elapsed > 0 and self.moved else 0.0
        left = max(self.bytes_total - self.bytes_done, 0)
        eta = left / speed if speed > 0 else None
        return DownloadProgress(
            file=self.file,
            bytes_done=self.bytes_done,
            bytes_total=self.bytes_total,
            speed_bps=speed,
            eta_s=eta,
            stage=self.stage,
            source=self.source,
            file_index=self.file_index,
            file_count=self.file_count,
        )

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.on_progress is None or (not force and now - self.last_report < REPORT_EVERY_S):
            return
        self.last_report = now
        self.on_progress(self.snapshot())
