"""The store's modules import one way: down the rows of the picture in ``store/__init__.py``.

Every import counts: module level, inside a function (the usual way to dodge a cycle), and under
``TYPE_CHECKING``; importing ``a.b.c`` also runs the package ``a.b``'s ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import embedserve.store

STORE = Path(embedserve.store.__file__).parent
PACKAGE = "embedserve.store"
# What the store may use from the rest of embedserve: it is the bottom of the design's stack. The
# packaged evaluation data (eval/data.py: CISI text, which int8 calibration reads) is a leaf too:
# test_outside_leaves_are_leaves checks that it imports nothing but errors.
OUTSIDE_LEAVES = {"embedserve.eval": "__init__.py", "embedserve.eval.data": "data.py"}
OUTSIDE_ALLOWED = {"embedserve", "embedserve.errors", "embedserve.config", *OUTSIDE_LEAVES}


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the store (package ``__init__`` included)."""
    out = {}
    for path in sorted(STORE.rglob("*.py")):
        parts = path.relative_to(STORE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((PACKAGE, *parts))] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every embedserve module ``name`` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    targets = set()
    for target in found:
        if not (target == "embedserve" or target.startswith("embedserve.")):
            continue
        targets.add(target)
        parts = target.split(".")
        for i in range(3, len(parts)):  # the packages whose __init__ the import runs first
            parent = ".".join(parts[:i])
            if parent != PACKAGE and not name.startswith(parent + ".") and name != parent:
                targets.add(parent)
    targets.discard(name)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _rows() -> list[list[str]]:
    """The picture's rows, top (imports the most) to bottom (leaves): the modules each names."""
    doc = embedserve.store.__doc__ or ""
    picture = doc.split("::", 1)[1]
    names = {p.stem for p in STORE.glob("*.py")} | {p.name for p in STORE.iterdir() if p.is_dir()}
    rows = []
    for line in picture.splitlines():
        row = []
        for word in line.split():
            if word.rstrip("/") not in names:
                break
            row.append(word.rstrip("/"))
        if row:
            rows.append(row)
    return rows


def _unit(module: str) -> str:
    """The picture's name for a module: its first component under the store (a file or a package)."""
    return module[len(PACKAGE) + 1 :].split(".")[0]


def test_every_store_module_has_one_place_in_the_picture() -> None:
    rows = _rows()
    placed = [unit for row in rows for unit in row]
    units = {_unit(m) for m in _modules() if m != PACKAGE}
    assert sorted(placed) == sorted(units), "each store module appears in exactly one row"
    assert len(rows) >= 5


def test_store_imports_only_downwards() -> None:
    rows = _rows()
    rank = {unit: len(rows) - i for i, row in enumerate(rows) for unit in row}  # leaves: 1
    upward = []
    for module, targets in _graph().items():
        if module == PACKAGE:
            assert not targets, "store/__init__.py is the picture only: importing it loads nothing"
            continue
        for target in targets:
            if target.startswith(PACKAGE + "."):
                if rank[_unit(target)] > rank[_unit(module)]:
                    upward.append(f"{module} -> {target}")
            elif target != PACKAGE:
                assert target in OUTSIDE_ALLOWED, f"{module} imports {target}: the store sits at the bottom"
    assert not upward, "imports going up the picture in store/__init__.py: " + ", ".join(upward)


def test_outside_leaves_are_leaves() -> None:
    """What the store may import from outside imports nothing of embedserve but errors."""
    import embedserve.eval

    folder = Path(embedserve.eval.__file__).parent
    for name, file in OUTSIDE_LEAVES.items():
        targets = _imports(name, folder / file, set(OUTSIDE_LEAVES))
        assert targets <= {"embedserve", "embedserve.errors", *OUTSIDE_LEAVES}, (name, targets)


def test_store_import_graph_has_no_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_the_checks_see_function_local_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from embedserve.store.local import ModelStore\n    from . import names\n")
    known = {f"{PACKAGE}.local", f"{PACKAGE}.names"}
    assert _imports(f"{PACKAGE}.pull", src, known) == {f"{PACKAGE}.local", PACKAGE + ".names", PACKAGE}
