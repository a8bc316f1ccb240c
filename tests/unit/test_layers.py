"""The command-line layer parses, calls the library and prints: the cli modules made thin
import no cryptography library (key and certificate work lives in the library)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "smimecli" / "cli"
CRYPTO_PACKAGES = ("cryptography", "asn1crypto")


def _imported(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


@pytest.mark.parametrize("module", ["lab.py", "tnef.py"])
def test_cli_module_imports_no_crypto(module: str) -> None:
    crypto = [name for name in _imported(CLI / module) if name.split(".")[0] in CRYPTO_PACKAGES]
    assert crypto == [], f"smimecli/cli/{module} imports {crypto}: move that work into the library"
