"""The one module the UI imports: the studio's facade, the form fields it hands out, the user-facing
errors. Everything the tabs decide (forms per model, request encodings, estimates, downloads) lives
behind it, in the core."""

from core.errors import readable_error
from core.facade.downloads import ModelDownloads
from core.facade.fields import SPEEDS, Field, choice_number
from core.facade.lora_files import LoraFiles, add_to_box
from core.facade.service import Facade, JobFailed
from core.facade.tables import (
    BATCH_COLUMNS,
    FINISHED_COLUMNS,
    HISTORY_COLUMNS,
    INTERRUPTED_COLUMNS,
    QUEUED_COLUMNS,
    WORKER_COLUMNS,
)
from core.jobs import Job, JobStatus
from core.studio import Studio
from core.validation import ConfigError

__all__ = [
    "BATCH_COLUMNS",
    "FINISHED_COLUMNS",
    "HISTORY_COLUMNS",
    "INTERRUPTED_COLUMNS",
    "QUEUED_COLUMNS",
    "SPEEDS",
    "WORKER_COLUMNS",
    "ConfigError",
    "Facade",
    "Field",
    "Job",
    "JobFailed",
    "JobStatus",
    "LoraFiles",
    "ModelDownloads",
    "Studio",
    "add_to_box",
    "choice_number",
    "readable_error",
]
