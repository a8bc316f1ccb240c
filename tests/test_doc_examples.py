"""Every shell example in the docs runs: the guides cannot drift from the commands.

Each Markdown file's examples run in order in one scratch folder, in one bash process, so a
later block can use what an earlier one made (a lab root, a rules file, an exported
variable). Two kinds of blocks are examples:

- ```` ```sh ```` blocks run as they stand;
- ```` ```console ```` blocks run their ``$ `` lines (a line ending in ``\\`` continues);
  the other lines are the output a reader sees and are not compared.

A block that cannot run here (it installs packages, needs root's Postfix, or shows a
keystroke such as <TAB>) is preceded by a comment line ``<!-- not run: REASON -->``; the
reason is required. The examples run with ``set -euo pipefail``, a private store and
``smimecli`` from this checkout on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(\S.*?)\s*-->\s*$")


@dataclass
class Example:
    """One runnable block: where it is and the shell text it runs."""

    path: Path
    line: int
    script: str


def _console_commands(body: str) -> str:
    commands: list[str] = []
    continuing = False
    for line in body.splitlines():
        if continuing:
            commands.append(line)
            continuing = line.endswith("\\")
        elif line.startswith("$ "):
            commands.append(line[2:])
            continuing = line.endswith("\\")
    return "\n".join(commands)


def examples(path: Path) -> list[Example]:
    """The runnable examples of one Markdown file, in order."""
    text = path.read_text(encoding="utf-8")
    found: list[Example] = []
    for match in FENCE.finditer(text):
        language, body = match.group(1), match.group(2)
        if language not in ("sh", "console"):
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if NOT_RUN.search(before):
            continue
        line = text.count("\n", 0, match.start()) + 1
        script = body if language == "sh" else _console_commands(body)
        if script.strip():
            found.append(Example(path, line, script))
    return found


def doc_files() -> list[Path]:
    """README.md and every guide under docs/."""
    files = [ROOT / "README.md"]
    docs = ROOT / "docs"
    if docs.is_dir():
        files.extend(sorted(docs.rglob("*.md")))
    return files


def _script(found: list[Example]) -> str:
    parts = ["set -euo pipefail"]
    for example in found:
        where = f"{example.path.relative_to(ROOT)}:{example.line}"
        parts.append(f"echo '>>> example at {where}' >&2")
        parts.append(example.script)
    return "\n".join(parts) + "\n"


def _environment(scratch: Path) -> dict[str, str]:
    bin_dir = scratch / ".bin"
    bin_dir.mkdir()
    launcher = bin_dir / "smimecli"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m smimecli "$@"\n')
    launcher.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMIMECLI_", "PYTEST_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONPATH=str(ROOT),
        HOME=str(scratch),
        XDG_DATA_HOME=str(scratch / ".local" / "share"),
        SMIMECLI_INTEROP_DIR=str(ROOT.parent / "shared" / "interop"),
        LC_ALL="C.UTF-8",
        COLUMNS="100",
    )
    return env


DOCS = [p for p in doc_files() if examples(p)]


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_shell_examples_run(doc: Path, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (.ci/run installs it with apt-get)")
    found = examples(doc)
    proc = subprocess.run(
        ["bash", "-c", _script(found)],
        cwd=tmp_path,
        env=_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    last = [line for line in proc.stderr.splitlines() if line.startswith(">>> example at")]
    where = last[-1][len(">>> example at ") :] if last else "(before the first example)"
    assert proc.returncode == 0, (
        f"the example at {where} failed with status {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )


def test_not_run_needs_a_reason(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- not run: needs root -->\n```sh\nfalse\n```\n\n"
        "<!-- not run: -->\n```sh\necho a\n```\n\n"
        "```console\n$ echo b \\\n  c\nb c\n```\n\n```toml\nx = 1\n```\n"
    )
    found = examples(page)
    assert [e.script for e in found] == ["echo a\n", "echo b \\\n  c"]
    assert [e.line for e in found] == [7, 11]
