"""The package's layers, and the import rule that keeps them: arrows only point down.

Every module of ``spidarknet`` belongs to one layer of :data:`LAYERS` (lower layers first).
A module may import modules of its own layer or of a lower one, never of a higher one, and
no chain of imports may come back to where it started.  Imports inside functions count as
arrows too: a lazy import delays the cost, not the dependency.

The imports are read with :mod:`ast` from the source files; nothing of the package is imported,
so this runs in a fraction of a second.  A new module must be placed in the table: the table is
the map of the package.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "spidarknet"

# Lower layers first.  ``name.*`` is a package with everything below it, a bare name one module;
# a module belongs to its longest match.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # errors, atomic outputs, frame-name matching, selection files, metrics, 0/1 labels; the version;
    # q from the radius, the sphere form factor and the radial profile every layer above shares
    ("core", ("spidarknet.core.*",)),
    # CXI/HDF5 frames streamed in chunks, geometry, masks, compression filters
    ("frames", ("spidarknet.frames.*",)),
    # simulated, labelled frames written as CXI (reads a user's file for --like)
    ("simulate", ("spidarknet.simulate.*",)),
    # the one preprocessing pipeline, frames -> network images
    ("preprocess", ("spidarknet.preprocess",)),
    # the one door to darknet: cfg, weights, the training folder it reads, backends, workers
    ("engine", ("spidarknet.engine.*",)),
    # labelled frames -> a darknet training folder
    ("dataset", ("spidarknet.dataset",)),
    # hit lists: scores, boxes, threshold, the selection as written
    ("hits", ("spidarknet.hits",)),
    # particle size per frame (used by detection's fits of screened
    # frames, select, export, reconstruct and the report)
    ("sizing", ("spidarknet.sizing.*", "spidarknet.sizing_kernels")),
    # frames -> hit list: local, all cores, shards, follow, threshold calibration
    ("detection", ("spidarknet.detection.*",)),
    # what the pipeline measures per frame, the selection learnt from labels, frames to label
    ("selection", ("spidarknet.selection.*",)),
    # a selection handed on: CXI copies, CrystFEL/OM lists and sidecars, Dragonfly EMC input
    ("export", ("spidarknet.export.*",)),
    # Dragonfly's EMC on a selection, its figures and page
    ("reconstruct", ("spidarknet.reconstruct.*",)),
    # truth, evaluation, breakdowns, comparisons, the 3D structure a selection gives
    ("judge", ("spidarknet.judge.*",)),
    # the HTML report of a selection and its figures
    ("report", ("spidarknet.report.*",)),
    # the library's functions for notebooks and scripts: open frames, load a model, detect, fit, evaluate
    ("api", ("spidarknet.api",)),
    # the pages in the browser: the monitor of a followed run, the labelling page
    ("serve", ("spidarknet.serve.*",)),
    # what each command does, as a library function: typed settings in, a result out
    ("jobs", ("spidarknet.jobs.*",)),
    # experiments that drive the pipeline through the commands' jobs, as a user would
    ("experiments", ("spidarknet.experiments.*",)),
    # command-line plumbing and one module per command: parse, build settings, call one function, print
    ("cli", ("spidarknet.cli.*", "spidarknet.__main__")),
    # the package's face: the API's names and the exceptions, imported on first use
    ("face", ("spidarknet",)),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=None)
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of the longest entry matching ``module``; None when none does."""
    best, best_len = None, -1
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if entry.endswith(".*"):
                base = entry[:-2]
                hit = module == base or module.startswith(base + ".")
                length = len(base)
            else:
                hit, length = module == entry, len(entry)
            if hit and length > best_len:
                best, best_len = index, length
    return best


def _target(name: str) -> str | None:
    """The package module an imported dotted name refers to (the nearest enclosing module)."""
    known = modules()
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


@lru_cache(maxsize=None)
def arrows() -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every import of a package module, in functions too."""
    known = modules()
    out = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    here = here[:len(here) - node.level + 1]
                    base = ".".join(here + ([base] if base else []))
                # ``from pkg import mod`` imports the module pkg.mod, ``from mod import f`` only mod
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                           for alias in node.names]
            for target in targets:
                if target == "spidarknet" or target.startswith("spidarknet."):
                    module = _target(target)
                    if module is not None and module != name:
                        out.append((name, module, node.lineno))
    return out


def _where(module: str, line: int) -> str:
    return f"{modules()[module].relative_to(PACKAGE.parent)}:{line}"


def test_every_module_has_a_layer():
    unplaced = [f"{modules()[m].relative_to(PACKAGE.parent)} ({m})" for m in modules() if layer_of(m) is None]
    assert not unplaced, ("modules without a layer; place each in LAYERS in tests/test_layers.py:\n  "
                          + "\n  ".join(unplaced))


def test_every_layer_entry_names_modules():
    names = modules()
    stale = [entry for _, entries in LAYERS for entry in entries
             if not any(m == entry.removesuffix(".*") or (entry.endswith(".*") and m.startswith(entry[:-1]))
                        for m in names)]
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


def test_imports_point_down_the_layers():
    wrong = []
    for importer, imported, line in arrows():
        low, high = layer_of(imported), layer_of(importer)
        if low is not None and high is not None and low > high:
            wrong.append(f"{_where(importer, line)}: {importer} ({LAYERS[high][0]}) imports "
                         f"{imported} ({LAYERS[low][0]}), a higher layer")
    assert not wrong, "imports against the layers:\n  " + "\n  ".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    lines: dict[tuple[str, str], int] = {}
    for importer, imported, line in arrows():
        graph[importer].add(imported)
        lines.setdefault((importer, imported), line)
    cycles = _cycles(graph)
    text = []
    for component in cycles:
        members = set(component)
        text.append(" <-> ".join(component) + ":\n    " + "\n    ".join(
            f"{_where(a, lines[(a, b)])}: {a} imports {b}"
            for a in component for b in sorted(graph[a] & members)))
    assert not cycles, "import cycles:\n  " + "\n  ".join(text)


def test_the_rule_sees_what_it_should():
    """The checker itself: a lazy import is an arrow, a relative import resolves, Tarjan finds a circle."""
    found = {(a, b) for a, b, _ in arrows()}
    assert ("spidarknet.cli.detect", "spidarknet.cli") in found          # from spidarknet import cli
    assert ("spidarknet.experiments.science", "spidarknet.jobs.detect") in found   # inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("spidarknet.cli.bench") > layer_of("spidarknet.experiments.science") > layer_of("spidarknet.jobs")


def test_command_table_names_existing_modules():
    """``cli.COMMANDS`` maps command names to module paths as strings: each must be a module here."""
    tree = ast.parse((PACKAGE / "cli" / "__init__.py").read_text())
    table = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "COMMANDS" for t in node.targets))
    paths = [value.elts[0].value for value in table.values]
    missing = [p for p in paths if p not in modules()]
    assert paths and not missing, f"cli.COMMANDS names modules that do not exist: {missing}"


def _namespace_uses(path: Path) -> list[str]:
    """Where a module imports argparse, or names ``Namespace`` (an annotation, a call)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
            found.append(f"{node.lineno}: import argparse")
        elif isinstance(node, ast.ImportFrom) and node.module == "argparse":
            found.append(f"{node.lineno}: from argparse import ...")
        elif isinstance(node, (ast.Name, ast.Attribute)) and (getattr(node, "id", None) == "Namespace"
                                                               or getattr(node, "attr", None) == "Namespace"):
            found.append(f"{node.lineno}: Namespace")
    return found


def test_args_stop_in_cli():
    """Issue #20 item 2: the commands' parsed options (an ``argparse.Namespace``) never leave
    ``cli/``; the library takes typed settings.  No module outside it imports argparse or names
    a Namespace (a parameter annotated ``argparse.Namespace``, a Namespace built to call it)."""
    outside = {name: path for name, path in modules().items()
               if not (name.startswith("spidarknet.cli") or name == "spidarknet.__main__")}
    wrong = [f"{path.relative_to(PACKAGE.parent)}:{use}" for path in outside.values() for use in _namespace_uses(path)]
    assert not wrong, "argparse outside spidarknet/cli:\n  " + "\n  ".join(wrong)
    # the checker sees what it should: cli/detect.py takes a Namespace
    assert any("Namespace" in use for use in _namespace_uses(modules()["spidarknet.cli.detect"]))
