"""The layer table of docs/DESIGN.md, enforced: every import inside `src/orch` (those inside functions
too) goes to a layer that its own layer may import, and data flows top to bottom, never back up.

A workflow may import activities only by reference, inside `workflow.unsafe.imports_passed_through()`,
and only activity classes and functions (the names the design lets it schedule).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "orch"

# The layer of each module, by its dotted path under `orch`, the longest prefix winning.
LAYER_OF: dict[str, str] = {
    "contracts": "contracts",
    "workflows": "workflows",
    "activities": "activities",
    "agents": "agents",
    "market": "market",
    "brokers": "brokers",
    "hft": "hft",
    "hft.client": "clients",  # orch hft's typed client, shared by activities and the CLI
    "hft.config": "settings",  # orch hft's settings: read by the CLI and the worker to find it
    "backtest": "backtest",
    "fake_alpaca": "fake_alpaca",
    "runtime": "runtime",
    "client": "clients",
    "clients": "clients",
    "converter": "clients",
    "config": "settings",
    "resources": "settings",
    "embedded": "settings",
    "telemetry": "telemetry",
    "workers": "workers",
    "cli": "cli",
    "": "package",  # orch/__init__.py
}

EVERYTHING = set(LAYER_OF.values())
# What each layer may import besides itself (DESIGN.md, "The layers").
MAY_IMPORT: dict[str, set[str]] = {
    "contracts": set(),
    "workflows": {"contracts"},  # and activities by reference, checked apart
    # backtest: the backtest activities wrap its engine, as the others wrap the agents.
    "activities": {"agents", "backtest", "market", "brokers", "runtime", "clients", "contracts", "settings"},
    "agents": {"contracts", "market"},  # market: its data types and calendars
    "market": {"contracts", "settings"},
    "brokers": {"contracts", "market", "settings"},
    "hft": {"contracts", "market", "brokers", "settings", "clients"},
    "backtest": {"contracts", "market", "agents", "settings"},
    "fake_alpaca": {"market", "contracts"},
    "runtime": {"contracts", "market"},
    "clients": {"contracts", "settings", "telemetry"},
    "settings": {"contracts", "settings"},
    "telemetry": {"settings"},
    "workers": EVERYTHING,
    "cli": {"contracts", "clients", "settings", "telemetry", "workers"},
    "package": set(),
}

# Known violations, each to be moved to its layer and then removed from here (a stale entry fails, so
# the list only shrinks). None is left: an import the table forbids fails the test.
TEMPORARY_ALLOWANCES: set[tuple[str, str]] = set()


def _layer(module: str) -> str | None:
    if module != "orch" and not module.startswith("orch."):
        return None
    parts = module.split(".")[1:]
    for end in range(len(parts), -1, -1):
        layer = LAYER_OF.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    raise AssertionError(f"no layer for {module}: add it to LAYER_OF and to DESIGN.md")


def _module_of(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in relative.parts if p != "__init__"]
    return ".".join(["orch", *parts])


def _passed_through(node: ast.With) -> bool:
    return any(
        isinstance(item.context_expr, ast.Call)
        and ast.unparse(item.context_expr.func).endswith("imports_passed_through")
        for item in node.items
    )


def _imports(path: Path) -> list[tuple[int, str, list[str], bool]]:
    """(line, module, names, inside imports_passed_through) for every `orch` import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_of(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    found: list[tuple[int, str, list[str], bool]] = []

    def visit(node: ast.AST, passed: bool) -> None:
        if isinstance(node, ast.With) and _passed_through(node):
            passed = True
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, [], passed) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((node.lineno, module, [a.name for a in node.names], passed))
        for child in ast.iter_child_nodes(node):
            visit(child, passed)

    visit(tree, False)
    return [entry for entry in found if entry[1] == "orch" or entry[1].startswith("orch.")]


def _activity_references_only(module: str, names: list[str]) -> bool:
    """A workflow names activity classes (`...Activities`) and activity functions, nothing else."""
    imported = __import__(module, fromlist=names)
    for name in names:
        value = getattr(imported, name)
        is_class = isinstance(value, type) and name.endswith("Activities")
        is_activity = hasattr(value, "__temporal_activity_definition")
        if not (is_class or is_activity):
            return False
    return True


def violations() -> list[str]:
    found, allowed_seen = [], set()
    for path in sorted(ROOT.rglob("*.py")):
        source_layer = _layer(_module_of(path))
        relative = str(path.relative_to(ROOT))
        for line, module, names, passed in _imports(path):
            target = _layer(module)
            if target is None or target == source_layer or target in MAY_IMPORT[source_layer]:
                continue
            by_reference = source_layer == "workflows" and target == "activities" and passed
            if by_reference and _activity_references_only(module, names):
                continue
            key = (relative, ".".join(module.split(".")[:3]))
            if key in TEMPORARY_ALLOWANCES:
                allowed_seen.add(key)
                continue
            found.append(f"src/orch/{relative}:{line}: {source_layer} may not import {module} ({target})")
    found += [f"stale allowance, remove it: {key}" for key in TEMPORARY_ALLOWANCES - allowed_seen]
    return found


def test_every_import_respects_the_layer_table() -> None:
    assert violations() == []


def test_the_checker_sees_imports_inside_functions_and_refuses_an_upward_one(tmp_path: Path) -> None:
    module = ROOT / "market" / "_layers_probe.py"
    module.write_text("def f():\n    from orch.workflows.command import CommandWorkflow\n")
    try:
        assert (
            "src/orch/market/_layers_probe.py:2: market may not import orch.workflows.command (workflows)"
            in (violations())
        )
    finally:
        module.unlink()


# What a contract may use from the standard library: describing data needs no file, process or clock.
IO_MODULES = {"os", "pathlib", "glob", "shutil", "subprocess", "socket", "sqlite3", "io", "tempfile"}
PURE_PATHS = {"PurePath", "PurePosixPath", "PureWindowsPath"}  # path arithmetic, no file system


def test_contracts_do_no_file_or_process_io() -> None:
    found = []
    for path in sorted((ROOT / "contracts").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [(alias.name, []) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [(node.module or "", [alias.name for alias in node.names])]
            else:
                modules = []
            for module, names in modules:
                pure = module == "pathlib" and names and set(names) <= PURE_PATHS
                if module.split(".")[0] in IO_MODULES and not pure:
                    found.append(f"src/orch/contracts/{path.name}:{node.lineno}: imports {module}")
            is_builtin_open = isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open"
            if is_builtin_open:
                found.append(f"src/orch/contracts/{path.name}:{node.lineno}: calls open()")
    assert found == [], "file or process I/O belongs in clients/ or the activities:\n" + "\n".join(found)
