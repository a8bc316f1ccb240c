"""The decrypt package has no import circle: unsign is its bottom layer."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (lazy imports in functions too)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.append(node.module)
    return names


def test_decrypt_package_imports_form_no_circle() -> None:
    # unsign is the bottom of the package: it takes signature layers off and knows nothing of
    # envelopes, keys or messages; every other module may use it, never the other way round.
    graph = {
        path.stem: {
            name.rsplit(".", 1)[1]
            for name in _imports(path)
            if name.startswith("smimecli.decrypt.")
        }
        for path in (ROOT / "smimecli" / "decrypt").glob("*.py")
    }
    assert graph["unsign"] == set()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join((*path, module))}"
        if module not in done:
            for used in graph.get(module, set()):
                visit(used, (*path, module))
            done.add(module)

    for module in graph:
        visit(module, ())
