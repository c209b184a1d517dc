"""The exception a job, or a download it runs, raises when its caller asked it to stop.

Its own module, with no imports, so that ``weights`` can raise it without depending on the job queue.
"""


class JobCancelledError(Exception):
    """Raised inside a running job (or a download) when the user asked to cancel it."""
