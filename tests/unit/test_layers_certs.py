"""The command-line layer parses, calls the library and prints: the cli modules made clean
here import no crypto library (cryptography, asn1crypto), not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRYPTO = ("cryptography", "asn1crypto")


def crypto_imports(path: Path) -> list[str]:
    """``LINE: module`` of every import of a crypto library in a Python file."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found.extend(
            f"{node.lineno}: {module}" for module in modules if module.split(".")[0] in CRYPTO
        )
    return found


@pytest.mark.parametrize("module", ["certs", "app", "common", "rules"])
def test_cli_module_imports_no_crypto_library(module: str) -> None:
    path = ROOT / "smimecli" / "cli" / f"{module}.py"
    assert crypto_imports(path) == [], f"{path} imports a crypto library"


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n    from cryptography import x509\n    import asn1crypto.cms\n",
        encoding="utf-8",
    )
    assert crypto_imports(sample) == ["2: cryptography", "3: asn1crypto.cms"]
