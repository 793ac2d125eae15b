"""The package's layer order, read from every import in the source (lazy ones included).

io -> nn -> datasets/descriptors -> train/models/spectral -> analysis -> plots/report ->
pipelines -> cli: a package imports only from its own layer or layers to its left, and no two
packages import each other, so a new violation fails here rather than in review. ``nn`` (pure
torch modules, importing nothing of ours) sits below descriptors because the atom and wall
finders run shipped U-Nets.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "latentatlas"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"_checks", "_files", "_latent_names", "_repr"}),
    frozenset({"io"}),
    frozenset({"nn"}),
    frozenset({"datasets", "descriptors"}),
    frozenset({"train", "models", "spectral"}),
    frozenset({"analysis"}),
    frozenset({"plots", "report"}),
    frozenset({"pipelines"}),
    frozenset({"cli"}),
)
LEVEL = {pkg: i for i, group in enumerate(LAYERS) for pkg in group}

# (importing file, imported module) -> why it is allowed. Each entry must still exist.
ALLOWED = {
    ("spectral/result.py", "latentatlas.plots.spectral"): (
        "UnmixResult.plot() is README API; plotting is imported at call time, as pandas and "
        "xarray do for .plot(); nothing in plots runs at import of spectral"
    ),
}

# Figures are drawn only from plots upward; a library never picks a backend.
_FIGURE_MODULES = ("matplotlib.pyplot", "matplotlib.figure")


def _package(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[str, int]]:
    """Absolute module names ``path`` imports (any depth, any branch), with line numbers."""
    rel = path.relative_to(SRC)
    here = ["latentatlas", *rel.parts[:-1]]
    if rel.name != "__init__.py":
        here.append(rel.stem)
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno))
            # ``from latentatlas import nn`` names a subpackage, not an attribute.
            out.extend((f"{name}.{a.name}", node.lineno) for a in node.names)
    return out


def _allowed(file: str, name: str) -> bool:
    return any(f == file and (name == m or name.startswith(m + ".")) for f, m in ALLOWED)


def _internal_edges() -> list[tuple[str, str, str, int]]:
    """(package, imported package, file, line) for every import between our subpackages."""
    edges = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel == Path("__init__.py"):
            continue  # the top-level namespace lazily re-exports the public API of every layer
        pkg = _package(rel)
        for name, line in _imports(path):
            parts = name.split(".")
            if parts[0] != "latentatlas" or len(parts) < 2 or parts[1] not in LEVEL:
                continue
            if parts[1] != pkg and not _allowed(rel.as_posix(), name):
                edges.append((pkg, parts[1], rel.as_posix(), line))
    return edges


def test_every_package_has_a_layer() -> None:
    packages = {_package(p.relative_to(SRC)) for p in SRC.rglob("*.py")} - {"__init__"}
    assert packages - set(LEVEL) == set(), "give each new package a place in LAYERS"


def test_imports_follow_the_layer_order() -> None:
    bad = [
        f"{file}:{line}: {pkg} imports {dep}"
        for pkg, dep, file, line in _internal_edges()
        if LEVEL[dep] > LEVEL[pkg]
    ]
    assert bad == [], "imports against the layer order:\n" + "\n".join(bad)


def test_no_two_packages_import_each_other() -> None:
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for pkg, dep, file, line in _internal_edges():
        graph.setdefault(pkg, set()).add(dep)
        where.setdefault((pkg, dep), f"{file}:{line}")

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(
        f"{a} ({where[a, b]}) -> {b}" for a, deps in graph.items() for b in deps if a in reach(b)
    )
    assert cycles == [], "package cycles:\n" + "\n".join(cycles)


def test_allowed_exceptions_still_exist() -> None:
    for (file, module), why in ALLOWED.items():
        names = {name for name, _ in _imports(SRC / file)}
        assert module in names, f"stale ALLOWED entry {file} -> {module} ({why}); remove it"


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_backend_choice_and_figures_only_from_plots_up(path: Path) -> None:
    text = path.read_text()
    assert "matplotlib.use(" not in text, f"{path}: a library must not choose a backend"
    rel = path.relative_to(SRC)
    if rel == Path("__init__.py") or LEVEL[_package(rel)] >= LEVEL["plots"]:
        return
    figure_imports = [
        f"{rel}:{line} imports {name}"
        for name, line in _imports(path)
        if name.startswith(_FIGURE_MODULES)
    ]
    assert figure_imports == []


# Files that may rename: the atomic writers themselves, and the results folder that moves
# finished, staged entries into place (each already written through _files).
_RENAMERS = {"_files.py", "pipelines/outputs.py"}


def test_files_are_written_through_the_one_atomic_writer() -> None:
    """A hand-rolled "write to temp, then rename" belongs in ``_files.write_atomic``."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in _RENAMERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in {"replace", "rename"} and _is_rename(node):
                    bad.append(f"{rel}:{node.lineno}")
    assert bad == [], "rename outside latentatlas._files (use write_atomic): " + ", ".join(bad)


def _is_rename(call: ast.Call) -> bool:
    # os.replace(a, b) / os.rename(a, b), or path.rename(target) / path.replace(target) with
    # one argument (str.replace takes two; dataclasses.replace copies).
    func = call.func
    assert isinstance(func, ast.Attribute)
    if isinstance(func.value, ast.Name) and func.value.id == "os":
        return True
    if isinstance(func.value, ast.Name) and func.value.id == "dataclasses":
        return False  # dataclasses.replace(obj) copies a dataclass
    return func.attr == "rename" or (len(call.args) == 1 and not call.keywords)
