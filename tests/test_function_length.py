"""Short functions: no function or method of ``spidarknet`` is longer than :data:`MAX_LINES`.

A function's length is that of its ``def`` node, decorators left out and docstring included
(``end_lineno - lineno + 1``).  A longer one is split into steps that follow the data flow,
each named for what it does; a command parses and prints, the work is in the library.
The modules are read with :mod:`ast`, nothing is imported, so this runs in a fraction of a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "spidarknet"

#: the most lines a function may have (issue #12, item 4)
MAX_LINES = 60


def long_functions(source: str, filename: str, limit: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function in ``source`` over ``limit`` lines."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                length = child.end_lineno - child.lineno + 1
                if length > limit:
                    found.append((name, child.lineno, length))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source, filename), "")
    return found


def test_no_function_is_longer_than_the_limit():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE.parent)
        for name, line, length in long_functions(path.read_text(), str(path)):
            too_long.append(f"{where}:{line}: {name} has {length} lines")
    assert not too_long, (f"functions over {MAX_LINES} lines; split each into named steps:\n  "
                          + "\n  ".join(too_long))


def test_the_check_counts_what_it_should():
    """Methods and nested functions are seen, the docstring counts, decorators do not."""
    def lines(indent: int) -> str:
        return "".join(f"{' ' * indent}x{i} = {i}\n" for i in range(57))

    source = ('class A:\n    @staticmethod\n    def m():\n        """doc"""\n' + lines(8)
              + "def f():\n    def inner():\n" + lines(8) + "        pass\n    return inner\n")
    found = {name: length for name, _, length in long_functions(source, "<test>", limit=58)}
    assert found == {"A.m": 59, "f": 61, "f.inner": 59}
    assert long_functions(source, "<test>", limit=61) == []
