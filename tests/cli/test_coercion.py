"""smimecli.cli.coercion: option values converted without pydantic, exactly as Typer would.

The light converter is an optimisation (SPEC section 5 start-up and 25 MB targets), so the
test is differential: for every option of every command, sample values go through both the
light converter and Typer's own pydantic one, and the results (or the refusal) must agree.
"""

from __future__ import annotations

import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import typer
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param

from smimecli.cli import coercion
from smimecli.cli.app import build_app
from tests.conftest import Cli

STRINGS = ["x", "", " spaced ", "ümlaut@example.org", "-", "a=b;c", "0"]
INTS = [
    "1",
    "0",
    "-3",
    "42",
    " 7 ",
    "x",
    "1.5",
    "",
    "99999999999999999999",
    "+4",
    "1e3",
    "1.0",
    "\u0663",
    "\uff11",
    "007",
    "1_000",
]


def _params() -> list[tuple[str, Any]]:
    """(command path, parameter) for every parameter of the whole tree."""
    found: list[tuple[str, Any]] = []

    def walk(command: Any, path: str) -> None:
        for param in command.params:
            found.append((f"{path} {param.name}", param))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(build_app()), "smimecli")
    return found


def _samples(annotation: Any, tmp_path: Path) -> list[Any]:
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        leaf = _samples(item, tmp_path)
        return [tuple(leaf[:2]), (), tuple(leaf[-1:])]
    if annotation is str:
        return STRINGS
    if annotation is int:
        return [*INTS, 1, 5]
    if annotation is bool:
        return [True, False]
    if annotation is Path:
        existing = tmp_path / "exists.pem"
        existing.write_bytes(b"x")
        return [
            "a/b.eml",
            "-",
            str(existing),
            str(tmp_path),
            str(tmp_path / "missing"),
            Path("p.eml"),
        ]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        values = [member.value for member in annotation]
        return [*values, values[0].upper(), "bogus", "", next(iter(annotation))]
    raise AssertionError(f"no samples for {annotation!r}: extend the test")


def _outcome(runtime: Any, value: Any, param: Any) -> tuple[str, Any]:
    try:
        result = runtime.coerce(value, param=param, ctx=None)
    except BadParameter:
        return ("refused", None)
    return ("value", (type(result), result))


def _id(value: Any) -> str:
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(("where", "param"), _params(), ids=_id)
def test_light_conversion_agrees_with_typer(where: str, param: Any, tmp_path: Path) -> None:
    descriptor = param.type_descriptor
    if not coercion._supported(descriptor.annotation, descriptor.parameter_info):
        pytest.fail(f"{where}: {descriptor.annotation!r} would fall back to pydantic")
    light = coercion._Light(
        parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
    )
    typer_own = build_runtime_param(descriptor)
    for value in [None, *_samples(descriptor.annotation, tmp_path)]:
        assert _outcome(light, value, param) == _outcome(typer_own, value, param), (
            f"{where} = {value!r}"
        )


def test_install_covers_every_parameter_and_the_help_flag() -> None:
    command = typer.main.get_command(build_app())
    installed = coercion.install(command)
    missing: list[str] = []
    seen = 0

    def walk(cmd: Any, path: str) -> None:
        nonlocal seen
        helper = cmd._help_option  # made by install()
        for param in [*cmd.params, helper]:
            seen += 1
            if not isinstance(param._runtime_param, coercion._Light):
                missing.append(f"{path} {param.name}")
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(command, "smimecli")
    assert missing == []
    assert installed == seen


def test_the_installed_typer_is_the_pinned_release() -> None:
    # coercion.py uses Typer's private modules; pyproject.toml pins the release range they
    # were tested with, and the fast path must be active with the Typer installed here.
    import tomllib
    from importlib.metadata import version

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    (pin,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("typer")]
    assert pin == "typer>=0.29,<0.30"
    major, minor = (int(part) for part in version("typer").split(".")[:2])
    assert (major, minor) == (0, 29), f"Typer {version('typer')} is outside {pin}"
    assert coercion.TYPER_INTERNALS


_SPY = (
    "import sys\n"
    "from smimecli.cli import coercion\n"
    "counts = []\n"
    "real_install = coercion.install\n"
    "def install(*args, **kwargs):\n"
    "    counts.append(real_install(*args, **kwargs))\n"
    "    return counts[-1]\n"
    "coercion.install = install\n"
    "from smimecli.cli.app import main\n"
)


@pytest.mark.parametrize(
    "args", [["encrypt", "--help"], ["--help"], ["certs", "list", "--help"]], ids=" ".join
)
def test_help_runs_the_fast_path_without_pydantic(args: list[str]) -> None:
    code = (
        _SPY + "try:\n"
        f"    status = main({args!r})\n"
        "except SystemExit as exc:\n"
        "    status = exc.code\n"
        "print('STATUS', status, 'INSTALLED', counts, 'PYDANTIC', 'pydantic' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("STATUS 0 INSTALLED ["), proc.stdout + proc.stderr
    counts = last.split("INSTALLED [", 1)[1].split("]", 1)[0]
    assert counts and all(int(n) > 0 for n in counts.split(",")), last
    assert last.endswith("PYDANTIC False"), last


def test_install_leaves_unknown_objects_alone() -> None:
    class Bare:
        def __init__(self) -> None:
            self.params = [object()]
            self.commands: dict[str, Any] = {}

    coercion.install(Bare())  # no type_descriptor: Typer keeps its own conversion


def test_unsupported_annotation_falls_back_to_typer() -> None:
    from datetime import datetime

    from typer.models import OptionInfo

    assert not coercion._supported(datetime, OptionInfo())
    assert not coercion._supported(str, OptionInfo(parser=str.upper))


def test_encrypt_runs_without_pydantic(tmp_path: Path, pki: Any) -> None:
    cert = pki.alice.cert_pem
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: a@example.org\nTo: b@example.org\nSubject: s\n\nhello\n")
    code = _SPY + (
        f"status = main(['encrypt', '--cert', {str(cert)!r}, {str(message)!r}, "
        f"'-o', {str(tmp_path / 'out.eml')!r}, '--cipher', 'aes128', '--jobs', '1'])\n"
        "print('STATUS', status, 'FAST', bool(counts) and min(counts) > 0, "
        "'PYDANTIC', 'pydantic' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "STATUS 0 FAST True PYDANTIC False" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "0"], "Invalid value for '--jobs'"),
        (["--jobs", "many"], "Invalid value for '--jobs'"),
        (["--cipher", "aes512"], "Invalid value for '--cipher'"),
        (["--oaep-hash", "md5"], "Invalid value for '--oaep-hash'"),
    ],
)
def test_bad_values_are_usage_errors(cli: Cli, args: list[str], message: str, pki: Any) -> None:
    cert = pki.alice.cert_pem
    result = cli(["encrypt", "--cert", str(cert), *args], input=b"From: a@b\n\nx\n")
    assert result.exit_code == 64
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_without_the_typer_internals_typer_converts(tmp_path: Path, pki: Any) -> None:
    # A Typer release without the private names coercion.py uses must still work: Typer
    # then converts the values itself (with pydantic), only slower.
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: a@example.org\nTo: b@example.org\nSubject: s\n\nhello\n")
    code = (
        "import sys\n"
        "import typer\n"
        "import typer._coercion as internals\n"
        "del internals.RuntimeParam  # gone from this 'release'; Typer itself still works\n"
        "from smimecli.cli import coercion\n"
        "from smimecli.cli.app import main\n"
        "assert coercion.TYPER_INTERNALS is False\n"
        f"status = main(['encrypt', '--cert', {str(pki.alice.cert_pem)!r}, "
        f"{str(message)!r}, '-o', {str(tmp_path / 'out.eml')!r}, '--cipher', 'aes128'])\n"
        "bad = main(['encrypt', '--cert', 'x', '--jobs', '0'])\n"
        "print('STATUS', status, bad, 'PYDANTIC', 'pydantic' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "STATUS 0 64 PYDANTIC True" in proc.stdout, proc.stdout + proc.stderr
    assert (tmp_path / "out.eml").read_bytes().count(b"smime-type=enveloped-data") == 1
