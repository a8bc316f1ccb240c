"""``smimecli demo``: the whole workflow in a throwaway store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smimecli.cli.common import emit_json, info


def demo(
    *,
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            help="Work in this folder and keep it (store, rules.toml, messages) "
            "instead of a throwaway one.",
            metavar="DIR",
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run the whole workflow end to end in a throwaway store.

    Creates a lab root "CN=Test Root V1" and a user "E=test@example.net,CN=SMIME Tester
    2048" in a private store, writes a rules file, encrypts a sample message by the rules
    (printing ENCRYPTED and the recipients), decrypts it with the key from the store,
    checks the round trip, and shows what inspect sees. Your own store is not touched.
    Each step's equivalent smimecli command line is printed on stderr ("$ ...") so that
    you can repeat it by hand (with --keep, in the kept folder).
    """
    import tempfile

    from smimecli.demo import run_demo
    from smimecli.errors import SmimeError

    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if not json:
            print(line, flush=True)

    def show(command_line: str) -> None:
        # The same step by hand, on stderr so that stdout stays the report.
        info(f"$ {command_line}")

    if keep is not None:
        try:
            keep.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from smimecli.errors import OutputError

            raise OutputError(f"cannot create {keep}: {exc.strerror or exc}") from exc
        result = run_demo(keep, say, command=show, kept=True)
    else:
        with tempfile.TemporaryDirectory(prefix="smimecli-demo-") as folder:
            result = run_demo(Path(folder), say, command=show)
    if json:
        emit_json(
            {
                "ok": result.ok,
                "folder": str(result.folder) if keep is not None else None,
                "root_thumbprint": result.root_thumbprint,
                "user_thumbprint": result.user_thumbprint,
                "encrypted_to": result.encrypted_to,
                "steps": lines,
            }
        )
    if not result.ok:
        raise SmimeError("demo: the decrypted message differs from the original")
    if not json:
        where = f"; files kept in {keep}" if keep is not None else ""
        print(f"demo OK{where}")
