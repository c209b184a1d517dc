"""Layer plumbing: our kernels/ folder leaves the import name ``kernels`` to Hugging Face's package, and the
``no_cycles`` import-linter contract type finds module cycles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import kernels
import core.kernels.block_sparse_attention as bsa
import core.kernels.fp8_attention as fp8
print(kernels.WHO, bsa.__file__, fp8.__file__, sep="\\n")
"""


def test_another_kernels_package_wins_over_our_folder(tmp_path):
    fake = tmp_path / "site" / "kernels"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('WHO = "the installed kernels package"\n', encoding="utf-8")

    # `python -c` puts the working directory (the repo root) first on sys.path, the fake package after it:
    # the order that made our folder shadow Hugging Face's.
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(fake.parent)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )

    who, bsa_file, fp8_file = result.stdout.splitlines()
    assert who == "the installed kernels package"
    assert Path(bsa_file) == ROOT / "kernels" / "block_sparse_attention.py"
    assert Path(fp8_file) == ROOT / "kernels" / "fp8_attention.py"


def test_no_cycles_contract_finds_each_cycle_once():
    grimp = pytest.importorskip("grimp")
    pytest.importorskip("importlinter")
    from tests.import_contracts import component_imports, strongly_connected

    graph = grimp.ImportGraph()
    edges = [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"), ("p.e", "p.d")]
    for importer, imported in edges:
        graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="import")

    assert strongly_connected(graph, graph.modules) == [["p.a", "p.b", "p.c"]]
    assert component_imports(graph, ["p.a", "p.b", "p.c"]) == [
        "p.a -> p.b (l. 1)",
        "p.b -> p.c (l. 1)",
        "p.c -> p.a (l. 1)",
    ]
