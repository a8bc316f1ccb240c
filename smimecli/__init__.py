"""smimecli: S/MIME encryption for mail servers and batch jobs.

The package root stays light: ``smimecli --version`` and ``--help`` must not import the
crypto stack, so the public API below is resolved lazily on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "EncryptRequest",
    "ExitStatus",
    "Notice",
    "Outcome",
    "SmimeError",
    "__version__",
    "decrypt_message",
    "encrypt_message",
    "encrypt_one",
]

_LAZY = {
    "EncryptRequest": "smimecli.encrypt.request",
    "encrypt_one": "smimecli.encrypt.request",
    "Outcome": "smimecli.encrypt.request",
    "Notice": "smimecli.notices",
    "ExitStatus": "smimecli.errors",
    "SmimeError": "smimecli.errors",
    "encrypt_message": "smimecli.encrypt.message",
    "decrypt_message": "smimecli.decrypt.message",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'smimecli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
