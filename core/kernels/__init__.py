"""GPU kernels, each with a torch fallback: the modules of the repository's top-level ``kernels/`` folder.

They import as ``core.kernels.<module>``. The folder has no ``__init__.py``, so it is only a namespace
portion and the import name ``kernels`` stays free for Hugging Face's ``kernels`` package (which
transformers requires): an installed regular package wins over a namespace portion wherever the repository
sits on ``sys.path``.
"""

from pathlib import Path

__path__ = [str(Path(__file__).resolve().parents[2] / "kernels")]
