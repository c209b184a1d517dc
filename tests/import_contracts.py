"""import-linter contract type ``no_cycles``: no import cycle among the modules of the root packages.

import-linter's own ``acyclic_siblings`` compares sibling packages (two packages that import each other in
any way, through different modules), which is stricter than "no cycles" and cannot see a cycle between
root packages. This one looks at modules: every strongly connected component of grimp's import graph
(imports inside functions and under ``TYPE_CHECKING`` count) breaks the contract, shown with the imports
that tie it together. Registered in pyproject.toml's ``[tool.importlinter]``, run by ``lint-imports``.
"""

from __future__ import annotations

from collections.abc import Iterable

from grimp import ImportGraph
from importlinter.application import contract_utils, output
from importlinter.application.contract_utils import AlertLevel
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def strongly_connected(graph: ImportGraph, modules: Iterable[str]) -> list[list[str]]:
    """The components of more than one module (Tarjan's algorithm), each sorted, in sorted order."""
    nodes = set(modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module) & nodes):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(nodes):
        if module not in index:
            visit(module)
    return sorted(found)


def component_imports(graph: ImportGraph, component: list[str]) -> list[str]:
    """``importer -> imported (l. N, M)`` for each import between two modules of ``component``."""
    members = set(component)
    lines = []
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            details = graph.get_import_details(importer=importer, imported=imported)
            numbers = ", ".join(str(d["line_number"]) for d in details)
            lines.append(f"{importer} -> {imported} (l. {numbers})")
    return lines


class NoCyclesContract(Contract):
    """No module of the root packages reaches itself through imports.

    Options: ``ignore_imports`` (import expressions left out of the graph first, optional) and
    ``unmatched_ignore_imports_alerting`` (none, warn or error; default error), as in import-linter's own
    contract types.
    """

    type_name = "no_cycles"

    ignore_imports = fields.SetField(subfield=fields.ImportExpressionField(), required=False)
    unmatched_ignore_imports_alerting = fields.EnumField(AlertLevel, default=AlertLevel.ERROR)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        removal = contract_utils.remove_ignored_imports_and_report(
            graph=graph,
            ignore_imports=self.ignore_imports,  # type: ignore[arg-type]
            unmatched_alerting=self.unmatched_ignore_imports_alerting,  # type: ignore[arg-type]
        )
        internal = [m for m in graph.modules if not graph.is_module_squashed(m)]
        components = strongly_connected(graph, internal)
        cycles = [component_imports(graph, component) for component in components]
        return ContractCheck(
            kept=not components,
            warnings=list(removal.warnings),
            ignored_import_count=removal.ignored_import_count,
            metadata={"components": components, "cycles": cycles},
        )

    def render_broken_contract(self, check: ContractCheck) -> None:
        for component, imports in zip(check.metadata["components"], check.metadata["cycles"], strict=True):
            output.print_error(f"Cycle of {len(component)} modules: {', '.join(component)}", bold=True)
            output.new_line()
            for line in imports:
                output.indent_cursor()
                output.print_error(line, bold=False)
            output.new_line()
