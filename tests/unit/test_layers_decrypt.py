"""Layers for decrypt, inspect and verify: the commands parse, call the library and print;
the library says nothing itself (its warnings are notices in its results)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRYPTO = ("cryptography", "asn1crypto")


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (lazy imports in functions too)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.append(node.module)
    return names


@pytest.mark.parametrize("module", ["smimecli/cli/decrypt.py", "smimecli/cli/verify.py"])
def test_cli_module_imports_no_crypto(module: str) -> None:
    found = [name for name in _imports(ROOT / module) if name.split(".")[0] in CRYPTO]
    assert found == [], f"{module} imports {found}: key and certificate work is the library's"


@pytest.mark.parametrize(
    "module",
    sorted(
        str(path.relative_to(ROOT))
        for folder in ("smimecli/decrypt", "smimecli/verify")
        for path in (ROOT / folder).glob("*.py")
    ),
)
def test_library_module_neither_logs_nor_prints(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    assert "logging" not in _imports(ROOT / module), f"{module} logs: return a Notice instead"
    calls = [
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    ]
    assert "print" not in calls, f"{module} prints: return a Notice instead"


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
