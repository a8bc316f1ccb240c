"""Option coercion without pydantic, for the parameter types smimecli's commands use.

Typer 0.29 converts every option value through a pydantic ``TypeAdapter``: importing
pydantic and building one adapter per option costs about 0.2 s on each run, which is most
of a small message's wall time and more than OpenSSL needs for a 25 MB one.
smimecli's options are plain ``str``, ``int`` (with ``min``), ``bool``, ``Path``, enums and
lists of those, so :func:`install` gives each such parameter of the Click command a small
converter with the same results; anything else (and any value it does not expect) goes on
to Typer's own conversion, which builds its adapter only then.

This reaches into Typer's private modules and parameter objects (``type_descriptor``,
``_runtime_param``), so pyproject.toml pins the Typer minor release it was tested with.
When they are not there (another Typer release), :func:`install` changes nothing and Typer
converts as before: slower, never wrong. ``tests/cli/test_coercion.py`` checks, for every
option of every command, that both converters agree, and that the fast path is active
(:data:`TYPER_INTERNALS`, the count :func:`install` returns, and ``encrypt`` and ``--help``
running without pydantic), so a Typer upgrade that breaks it fails the tests.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args, get_origin

try:
    from typer._click.exceptions import BadParameter
    from typer._coercion import RuntimeParam, build_runtime_param, resolve_type_descriptor
    from typer._param_types import coerce_cli_choice, coerce_cli_path
except ImportError:  # another Typer release: install() leaves Typer's own conversion
    TYPER_INTERNALS = False
    RuntimeParam = object  # type: ignore[misc,assignment]
else:
    TYPER_INTERNALS = True

__all__ = ["TYPER_INTERNALS", "install"]


_PLAIN_INT = re.compile(r"\s*[+-]?[0-9]+\s*")


def _plain_int(text: str) -> int | None:
    """An integer written the plain way (ASCII digits, sign, spaces around), else None."""
    return int(text) if _PLAIN_INT.fullmatch(text) else None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode(sys.getfilesystemencoding(), "surrogateescape")
    raise TypeError(value)


class _Light(RuntimeParam):
    """Converts str, int, bool, Path and Enum values (and lists of them) without pydantic."""

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        annotation: Any = self.annotation
        if get_origin(annotation) is list:
            (item,) = get_args(annotation)
            if isinstance(value, list | tuple):
                return [self._leaf(item, v, param, ctx) for v in value]
            return [self._leaf(item, value, param, ctx)]
        return self._leaf(annotation, value, param, ctx)

    def _leaf(self, annotation: Any, value: Any, param: Any, ctx: Any) -> Any:
        info = self.parameter_info
        try:
            if annotation is str:
                return _text(value)
            if annotation is bool and isinstance(value, bool):
                return value
            if annotation is int and not isinstance(value, bool):
                number = value if isinstance(value, int) else _plain_int(_text(value))
                in_range = (
                    number is not None
                    and (info.min is None or number >= info.min)
                    and (info.max is None or number <= info.max)
                )
                if in_range:
                    return number
                # Anything else (and every refusal, with its message) is Typer's to say.
            if annotation is Path:
                # Typer's own path checks, given a Path so that they need no pydantic.
                path = (
                    value
                    if isinstance(value, Path)
                    else Path(os.fspath(value) if isinstance(value, os.PathLike) else _text(value))
                )
                return coerce_cli_path(path, info, path_type=Path, param=param, ctx=ctx)
            if isinstance(annotation, type) and issubclass(annotation, Enum):
                return coerce_cli_choice(
                    value, choices=list(annotation), case_sensitive=info.case_sensitive, ctx=ctx
                )
        except ValueError as exc:
            if isinstance(exc, BadParameter):
                raise
            raise BadParameter(str(exc), ctx=ctx, param=param) from None
        except TypeError:
            pass
        # Not a case this converter knows: Typer's own conversion decides.
        full = build_runtime_param(resolve_type_descriptor(annotation, info))
        return full._coerce_value(value, param=param, ctx=ctx)


def _supported(annotation: Any, info: Any) -> bool:
    if get_origin(annotation) is list:
        args = get_args(annotation)
        return len(args) == 1 and _supported(args[0], info)
    if info.parser is not None or info.clamp:
        return False
    if annotation is Path:
        return info.path_type in (None, Path)
    if annotation in (str, bool, int):
        return True
    return isinstance(annotation, type) and issubclass(annotation, Enum)


def install(command: Any, help_names: Sequence[str] = ("--help",)) -> int:
    """Give every parameter of a Click command tree (built by Typer) the light converter.

    Without the Typer internals it relies on, or when they have changed shape, it leaves
    the parameters as they are: Typer then converts the values itself (slower, not wrong).

    Returns:
        How many parameters now use the light converter (0: Typer converts them all), so
        that a test can tell the fast path from the slow one.
    """
    if not TYPER_INTERNALS:
        return 0
    try:
        return _install(command, help_names)
    except (AttributeError, TypeError, ValueError):
        return 0


def _install(command: Any, help_names: Sequence[str]) -> int:
    help_names = (getattr(command, "context_settings", None) or {}).get(
        "help_option_names", help_names
    )
    params = list(getattr(command, "params", ()))
    make_help = getattr(command, "get_help_option", None)
    if make_help is not None:
        # Click makes the --help flag on first use, and Typer would convert its value
        # through pydantic: make it now (Click keeps it) so that it is converted here too.
        helper = make_help(SimpleNamespace(help_option_names=list(help_names)))
        if helper is not None:
            params.append(helper)
    installed = 0
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", "missing") is not None:
            continue
        if _supported(descriptor.annotation, descriptor.parameter_info):
            param._runtime_param = _Light(
                parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
            )
            installed += 1
    for sub in getattr(command, "commands", {}).values():
        installed += _install(sub, help_names)
    return installed
