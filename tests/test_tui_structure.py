"""The shape of the ``tui`` package, read from its source: it uses only ``saga_model``'s public
names, and its modules import each other without a cycle."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import saga_model

TUI = Path(__file__).parent.parent / "tui"


def modules() -> dict[str, tuple[Path, ast.Module]]:
    """Every module of ``tui`` by dotted name, with its syntax tree."""
    found = {}
    for path in sorted(TUI.rglob("*.py")):
        parts = path.relative_to(TUI.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = (path, ast.parse(path.read_text(encoding="utf-8")))
    return found


def imported(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement brings in (``package.name`` for each name of a
    ``from package import name``), at any depth of the module: under ``if TYPE_CHECKING``
    and inside functions too."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parent, *([node.module] if node.module else [])])
    return [f"{base}.{alias.name}" for alias in node.names]


def saga_model_uses(tree: ast.Module, path: Path) -> list[str]:
    """``saga_model.<name>`` for every name the module imports from or reads off saga_model."""
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            uses += [name for name in imported("tui", path, node)
                     if name.split(".")[0] == "saga_model" and name != "saga_model"]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "saga_model"):
            uses.append(f"saga_model.{node.attr}")
    return uses


def test_tui_uses_only_the_public_names_of_saga_model() -> None:
    public = {f"saga_model.{name}" for name in saga_model.__all__}
    private = {f"{path.relative_to(TUI.parent)}: {use}"
               for path, tree in modules().values()
               for use in saga_model_uses(tree, path) if use not in public}
    assert not private, f"tui reaches past saga_model's public API: {sorted(private)}"


def test_the_scan_sees_every_way_of_reaching_in(tmp_path: Path) -> None:
    source = ("import saga_model.atomic\nfrom saga_model.cli.common import format_duration\n"
              "from saga_model import THEMES\nimport saga_model\n"
              "def f():\n    return saga_model.generate.tell_story\n")
    path = tmp_path / "sample.py"
    assert saga_model_uses(ast.parse(source), path) == [
        "saga_model.atomic", "saga_model.cli.common.format_duration", "saga_model.THEMES",
        "saga_model.generate"]


def import_graph() -> dict[str, set[str]]:
    """``tui`` module -> the ``tui`` modules it imports (anywhere in its source)."""
    found = modules()
    graph: dict[str, set[str]] = {}
    for name, (path, tree) in found.items():
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in imported(name, path, node):
                    while target and target not in found:  # a name inside a module
                        target = target.rpartition(".")[0]
                    if target and target != name:
                        targets.add(target)
        graph[name] = targets
    return graph


def test_tui_modules_import_each_other_without_a_cycle() -> None:
    graph = import_graph()
    assert "tui.screens.story" in graph["tui.app"]  # the graph sees the imports
    assert "tui.app" not in graph["tui.screens.base"]  # screens reach the app by a Protocol
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"tui has an import cycle: {' -> '.join(exc.args[1])}") from None
    assert order.index("tui.session") < order.index("tui.screens.story")
