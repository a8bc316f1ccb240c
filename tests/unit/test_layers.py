"""The layers of the house: the command line parses, calls the library and prints; the
library never imports typer or rich, never logs or prints (its warnings are notices in its
results), and only the daemon (smimecli/serve/) keeps a log.

Every check reads the source with ``ast``, so an import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "smimecli"
CRYPTO = ("cryptography", "asn1crypto")
TERMINAL = ("typer", "rich", "click")


def imported(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in a Python file, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _modules(*, cli: bool) -> list[str]:
    return sorted(
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if (path.parent.name == "cli") == cli
    )


@pytest.mark.parametrize("module", _modules(cli=True))
def test_cli_module_imports_no_crypto_library(module: str) -> None:
    crypto = [
        f"{line}: {name}" for line, name in imported(ROOT / module) if name.split(".")[0] in CRYPTO
    ]
    assert crypto == [], f"{module} imports {crypto}: key and certificate work is the library's"


@pytest.mark.parametrize("module", _modules(cli=False))
def test_library_module_imports_no_terminal_library(module: str) -> None:
    terminal = [
        f"{line}: {name}"
        for line, name in imported(ROOT / module)
        if name.split(".")[0] in TERMINAL
    ]
    assert terminal == [], f"{module} imports {terminal}: only smimecli/cli/ talks to a terminal"


@pytest.mark.parametrize(
    "module", [m for m in _modules(cli=False) if not m.startswith("smimecli/serve/")]
)
def test_library_module_neither_logs_nor_prints(module: str) -> None:
    path = ROOT / module
    assert "logging" not in [name for _, name in imported(path)], (
        f"{module} logs: return a smimecli.notices.Notice in the result instead"
    )
    calls = [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]
    assert calls == [], f"{module} prints (lines {calls}): return a Notice instead"


def test_the_checks_see_imports_inside_a_function(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n    from cryptography import x509\n    import asn1crypto.cms\n",
        encoding="utf-8",
    )
    assert imported(sample) == [(2, "cryptography"), (3, "asn1crypto.cms")]
