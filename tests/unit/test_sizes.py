"""Size guard for the library: modules and functions stay small enough to read in one go.

The aims are no library module over ~450 lines and no function over ~60 (docs/development.md);
this test fails above 480 lines for a module (a little slack) and 60 for a function. The
library is everything under smimecli/ except smimecli/cli/. A module still over a limit is
named in ALLOWED with the reason; an entry that is no longer needed fails too, so the list
only shrinks.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 480
MAX_FUNCTION_LINES = 60

# Path (or fnmatch pattern) relative to the repository -> why it may still be over a limit.
# An entry covers the module's length and the length of every function in it.
ALLOWED: dict[str, str] = {}


def _library() -> Iterator[Path]:
    for path in sorted((ROOT / "smimecli").rglob("*.py")):
        if (ROOT / "smimecli" / "cli") not in path.parents:
            yield path


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, lines from ``def`` to the last line) of every function."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = prefix + node.name
            yield name, (node.end_lineno or node.lineno) - node.lineno + 1
            yield from _functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")
        else:
            yield from _functions(node, prefix)


def _oversized() -> dict[str, list[str]]:
    """Every library module over a limit -> what is over it."""
    found: dict[str, list[str]] = {}
    for path in _library():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT).as_posix()
        problems = []
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            problems.append(f"{lines} lines (limit {MAX_MODULE_LINES})")
        for name, length in _functions(ast.parse(text, filename=rel)):
            if length > MAX_FUNCTION_LINES:
                problems.append(f"{name}() is {length} lines (limit {MAX_FUNCTION_LINES})")
        if problems:
            found[rel] = problems
    return found


def _allowed(rel: str) -> bool:
    return any(fnmatch.fnmatch(rel, pattern) for pattern in ALLOWED)


def test_library_modules_and_functions_are_within_the_limits() -> None:
    over = {rel: problems for rel, problems in _oversized().items() if not _allowed(rel)}
    report = "\n".join(f"{rel}: {'; '.join(problems)}" for rel, problems in over.items())
    assert not over, (
        "split these by what they hold (moves, not rewrites), or name them in ALLOWED "
        f"with the reason:\n{report}"
    )


def test_every_allow_list_entry_is_still_needed() -> None:
    over = _oversized()
    stale = [
        pattern for pattern in ALLOWED if not any(fnmatch.fnmatch(rel, pattern) for rel in over)
    ]
    assert not stale, f"within the limits now: remove from ALLOWED: {', '.join(stale)}"


def test_the_guard_sees_long_functions_and_methods() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source = f"class C:\n    def m(self) -> None:\n    {body.replace(chr(10), chr(10) + '    ')}\n"
    source += f"def f() -> None:\n{body}\n    def inner() -> None:\n        pass\n"
    lengths = dict(_functions(ast.parse(source)))
    assert lengths["C.m"] == MAX_FUNCTION_LINES + 1
    assert lengths["f"] == MAX_FUNCTION_LINES + 3
    assert lengths["f.inner"] == 2
    assert "smimecli/cli/app.py" not in {p.relative_to(ROOT).as_posix() for p in _library()}
