"""Generated docs are checked, not trusted (STYLE 7): man pages and completions.

The committed man/ and completions/ must equal what ``python -m tools.gen_docs`` makes from
the CLI now; the pages must render with the real ``man`` and show every option that
``--help`` shows; the completion scripts must parse in bash, zsh and fish and complete the
real command tree. A small toy Typer app exercises what the real commands may not have yet
(choices, folders, nested groups, required options).
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer
import typer.main

from tests.conftest import ROOT, require_tool, run_cli
from tools import gen_docs
from tools.gen_docs import Command, ValueKind

WIDE = {"COLUMNS": "250", "TERMINAL_WIDTH": "250"}


def _tree() -> Command:
    return gen_docs.smimecli_tree()


TREE = _tree()
COMMANDS = list(TREE.walk())
GROUPS = [c for c in COMMANDS if c.subcommands]


def _ids(cmd: Command) -> str:
    return cmd.key or "smimecli"


# --- a toy app with what a generic generator must handle ---------------------------------


class Colour(enum.StrEnum):
    red = "red"
    green = "green"


toy = typer.Typer(context_settings={"help_option_names": ["-h", "--help"]})
toy_sub = typer.Typer(help="Nested things.")
toy.add_typer(toy_sub, name="nest")


@toy.callback()
def _toy_root(
    *,
    store: Annotated[
        Path | None,
        typer.Option("--store", envvar="TOY_STORE", metavar="DIR", help="Store folder."),
    ] = None,
) -> None:
    """Toy root.

    .starts with a dot, a back\\slash and 'a quote.
    """


@toy.command("paint")
def _toy_paint(
    inputs: Annotated[list[Path] | None, typer.Argument(metavar="INPUT", help="Files.")] = None,
    *,
    colour: Annotated[Colour, typer.Option(help="Enum choice.")] = Colour.green,
    mode: Annotated[Literal["fast", "slow"], typer.Option(help="Literal choice.")] = "fast",
    hash_name: Annotated[
        str, typer.Option("--hash", metavar="sha256|sha512", help="Metavar choice.")
    ] = "sha256",
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", metavar="DIR", help="A folder.")
    ] = None,
    cert: Annotated[
        list[Path] | None, typer.Option("--cert", "-c", metavar="FILE", help="Repeatable file.")
    ] = None,
    tnef: Annotated[bool, typer.Option("--convert-tnef/--no-convert-tnef", help="A pair.")] = True,
    email: Annotated[str, typer.Option("--email", metavar="ADDR", help="Needed.")] = ...,
    secret: Annotated[str, typer.Option(hidden=True)] = "",
) -> None:
    """Paint things.

    Second paragraph with --colour and -c.

        indented block
          kept verbatim
    """


@toy_sub.command("deep")
def _toy_deep(*, level: Annotated[int, typer.Option(help="Depth.")] = 3) -> None:
    """Go deep."""


@pytest.fixture(scope="module")
def toy_tree() -> Command:
    return gen_docs.build_tree(typer.main.get_command(toy))


# --- freshness ----------------------------------------------------------------------------


def test_committed_files_are_what_the_generator_makes_now() -> None:
    problems = gen_docs.differences()
    assert not problems, (
        "man pages / completions are stale; run: python -m tools.gen_docs\n" + "\n".join(problems)
    )


def test_check_mode_reports_stale_and_extra_files(tmp_path: Path) -> None:
    files = gen_docs.generated_files()
    gen_docs.write(tmp_path, files)
    assert gen_docs.differences(tmp_path, files) == []
    page = tmp_path / "man" / "smimecli-encrypt.1"
    page.write_text(page.read_text() + '.\\" edited by hand\n')
    (tmp_path / "man" / "smimecli-gone.1").write_text("old\n")
    (tmp_path / "completions" / "smimecli.fish").unlink()
    problems = "\n".join(gen_docs.differences(tmp_path, files))
    assert "man/smimecli-encrypt.1: differs" in problems
    assert "man/smimecli-gone.1: no longer generated" in problems
    assert "completions/smimecli.fish: missing" in problems
    changed = gen_docs.write(tmp_path, files)
    assert set(changed) == {
        "man/smimecli-encrypt.1",
        "man/smimecli-gone.1",
        "completions/smimecli.fish",
    }
    assert not (tmp_path / "man" / "smimecli-gone.1").exists()
    assert gen_docs.differences(tmp_path, files) == []


def test_check_command_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.gen_docs", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generation_does_not_depend_on_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("TERMINAL_WIDTH", "40")
    narrow = gen_docs.render_all(_tree(), "1")
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setenv("TERMINAL_WIDTH", "300")
    assert gen_docs.render_all(_tree(), "1") == narrow


# --- man pages ----------------------------------------------------------------------------


def _page(cmd: Command) -> str:
    return (ROOT / "man" / f"{cmd.page}.1").read_text(encoding="utf-8")


@pytest.mark.parametrize("cmd", COMMANDS, ids=_ids)
def test_man_page_has_every_section_and_option(cmd: Command) -> None:
    page = _page(cmd)
    for section in (
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "SEE ALSO",
    ):
        assert f"\n.SH {section}\n" in page, section
    for opt in cmd.options:
        for name in opt.all_opts:
            assert gen_docs.roff(name) in page, name
    for sub in cmd.subcommands:
        assert f"\\fB{gen_docs.roff(sub.page)}\\fR(1)" in page


def test_exit_status_section_lists_every_sysexits_code() -> None:
    from smimecli.errors import ExitStatus

    statuses = dict(gen_docs.exit_statuses())
    assert set(statuses) == {int(s) for s in ExitStatus}
    assert all(text and "\n" not in text for text in statuses.values())
    page = _page(TREE)
    for code in statuses:
        assert f".TP\n\\fB{code}\\fR\n" in page


def test_files_section_names_the_store_database() -> None:
    name = gen_docs.store_file_name()
    assert re.fullmatch(r"[\w.-]+", name)
    assert gen_docs.roff(name) in _page(TREE)


def test_examples_name_real_commands() -> None:
    paths = {c.path for c in COMMANDS}
    stub_groups = {
        g.path
        for g in COMMANDS
        if not g.subcommands and g.path in {("certs",), ("rules",), ("tnef",)}
    }
    for path in gen_docs.EXAMPLES:
        assert path in paths or path[:1] in stub_groups, f"example for unknown command {path}"


def test_roff_escaping() -> None:
    assert gen_docs.roff(".dot\n'quote\nback\\slash --opt") == (
        "\\&.dot\n\\&'quote\nback\\eslash \\-\\-opt"
    )


def _help_options(help_text: str) -> set[str]:
    """Option spellings in the option rows of a --help screen (plain Click or rich panels)."""
    found: set[str] = set()
    for line in help_text.splitlines():
        row = line.strip().strip("│").strip().lstrip("*").strip()
        if not row.startswith("-"):
            continue
        for column in re.split(r"\s{2,}", row):
            if not column.startswith("-"):
                break
            found.update(re.findall(r"(?<![\w-])-{1,2}[A-Za-z0-9][\w-]*", column))
    return found


def _man_text(page: Path) -> str:
    env = {
        **os.environ,
        "LC_ALL": "C",
        "LANG": "C",
        "MANWIDTH": "250",
        "MANPAGER": "cat",
        "PAGER": "cat",
    }
    proc = subprocess.run(
        ["man", "-l", str(page)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr.lower(), proc.stderr
    return re.sub(r".\x08", "", proc.stdout)  # overstrike bold, if any


@pytest.mark.parametrize("cmd", COMMANDS, ids=_ids)
def test_man_renders_every_option_of_help(cmd: Command) -> None:
    require_tool("man")
    result = run_cli([*cmd.path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    options = _help_options(result.stdout.decode())
    assert {"-h", "--help"} <= options, result.output  # the parser saw the option rows
    rendered = _man_text(ROOT / "man" / f"{cmd.page}.1")
    words = set(re.findall(r"-{1,2}[\w-]+", rendered))
    missing = sorted(options - words)
    assert not missing, f"{cmd.name} --help shows {missing}, man page does not"


def test_encrypt_page_renders_with_man() -> None:
    """The page the brief names: every option of ``smimecli encrypt --help`` in ``man``."""
    encrypt = next(c for c in COMMANDS if c.path == ("encrypt",))
    test_man_renders_every_option_of_help(encrypt)


def test_toy_man_page(toy_tree: Command, tmp_path: Path) -> None:
    paint = next(c for c in toy_tree.walk() if c.path == ("paint",))
    page = gen_docs.render_man(paint, toy_tree, "9.9")
    assert "One of: red, green." in page and "Default: green." in page
    assert "One of: fast, slow." in page and "One of: sha256, sha512." in page
    assert "Default: \\-\\-convert\\-tnef." in page
    assert "\\fB\\-\\-email\\fR \\fIADDR\\fR" in page.split(".SH DESCRIPTION")[0]  # synopsis
    assert "[\\fIINPUT\\fR...]" in page
    assert "May be given more than once." in page
    assert "secret" not in page  # hidden options stay hidden
    assert ".nf\n    indented block\n      kept verbatim\n.fi" in page
    root_page = gen_docs.render_man(toy_tree, toy_tree, "9.9")
    assert "\\&.starts with a dot, a back\\eslash and 'a quote." in root_page
    assert "\\fBTOY_STORE\\fR" in root_page
    if shutil.which("man"):
        target = tmp_path / "toy-paint.1"
        target.write_text(page)
        text = _man_text(target)
        assert "--convert-tnef, --no-convert-tnef" in text
        assert "-c, --cert FILE" in text


def test_toy_tree_model(toy_tree: Command) -> None:
    paint = next(c for c in toy_tree.walk() if c.path == ("paint",))
    by_name = {o.all_opts[-1]: o for o in paint.options}
    assert by_name["--colour"].kind is ValueKind.CHOICE
    assert by_name["--hash"].choices == ("sha256", "sha512")
    assert by_name["--out-dir"].kind is ValueKind.DIR
    assert by_name["--cert"].kind is ValueKind.FILE and by_name["--cert"].multiple
    assert by_name["--no-convert-tnef"].kind is ValueKind.NONE
    assert by_name["--email"].required
    assert paint.arguments[0].variadic and paint.arguments[0].kind is ValueKind.FILE
    assert [c.key for c in toy_tree.walk()] == ["", "paint", "nest", "nest deep"]


# --- completions --------------------------------------------------------------------------


COMPLETIONS = ROOT / "completions"


def test_bash_completion_parses() -> None:
    bash = require_tool("bash")
    proc = subprocess.run(
        [bash, "-n", str(COMPLETIONS / "smimecli.bash")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_zsh_completion_parses() -> None:
    zsh = require_tool("zsh")
    proc = subprocess.run(
        [zsh, "-n", str(COMPLETIONS / "_smimecli")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_fish_completion_parses() -> None:
    fish = require_tool("fish")
    proc = subprocess.run(
        [fish, "--no-execute", str(COMPLETIONS / "smimecli.fish")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def _bash_complete(script: Path, lines: list[list[str]], cwd: Path) -> list[list[str]]:
    """Run the bash completion function on each command line (last word = being typed)."""
    bash = require_tool("bash")
    calls = []
    for words in lines:
        quoted = " ".join(_q(w) for w in words)
        calls.append(
            f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMPREPLY=(); "
            "_smimecli; printf '%s\\n' \"${COMPREPLY[*]}\""
        )
    program = f"source {_q(str(script))}\n" + "\n".join(calls)
    proc = subprocess.run(
        [bash, "-c", program], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [line.split() for line in proc.stdout.splitlines()]


def _q(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def test_bash_completes_the_real_tree(tmp_path: Path) -> None:
    lines = [["smimecli", *g.path, ""] for g in GROUPS]
    lines += [["smimecli", *c.path, "-"] for c in COMMANDS]
    got = _bash_complete(COMPLETIONS / "smimecli.bash", lines, tmp_path)
    for group, reply in zip(GROUPS, got, strict=False):
        assert reply == [s.path[-1] for s in group.subcommands], group.name
    for cmd, reply in zip(COMMANDS, got[len(GROUPS) :], strict=True):
        assert sorted(reply) == sorted(o for opt in cmd.options for o in opt.all_opts), cmd.name


def test_bash_completes_choices_files_and_folders(toy_tree: Command, tmp_path: Path) -> None:
    script = tmp_path / "toy.bash"
    script.write_text(gen_docs.render_bash(toy_tree))
    (tmp_path / "alpha.pem").write_text("x")
    (tmp_path / "albums").mkdir()
    got = _bash_complete(
        script,
        [
            ["smimecli", ""],
            ["smimecli", "--store", "al"],
            ["smimecli", "--store", "x", "pa"],
            ["smimecli", "paint", "--colour", ""],
            ["smimecli", "paint", "--hash", "sha5"],
            ["smimecli", "paint", "--out-dir", "al"],
            ["smimecli", "paint", "-c", "alp"],
            ["smimecli", "paint", "--convert-tnef", "al"],
            ["smimecli", "nest", ""],
            ["smimecli", "nest", "deep", "--l"],
            ["smimecli", "nest", "deep", "--level", ""],
        ],
        tmp_path,
    )
    assert [sorted(reply) for reply in got] == [
        ["nest", "paint"],
        ["albums"],
        ["paint"],
        ["green", "red"],
        ["sha512"],
        ["albums"],
        ["alpha.pem"],
        ["albums", "alpha.pem"],
        ["deep"],
        ["--level"],
        [],
    ]


def _fish_complete(script: Path, lines: list[str], cwd: Path) -> list[list[str]]:
    fish = require_tool("fish")
    program = f"source {_q(str(script))}\n" + "\n".join(
        f"set -l reply (complete -C {_q(line)} | string replace -r '\\t.*' ''); echo \"$reply\""
        for line in lines
    )
    proc = subprocess.run(
        [fish, "--no-config", "-c", program], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [line.split() for line in proc.stdout.split("\n")[: len(lines)]]


def test_fish_completes_the_real_tree(tmp_path: Path) -> None:
    lines = [" ".join(["smimecli", *g.path, ""]) for g in GROUPS]
    got = _fish_complete(COMPLETIONS / "smimecli.fish", lines, tmp_path)
    for group, reply in zip(GROUPS, got, strict=True):
        assert sorted(reply) == sorted(s.path[-1] for s in group.subcommands), group.name


def test_fish_completes_choices_and_nesting(toy_tree: Command, tmp_path: Path) -> None:
    script = tmp_path / "toy.fish"
    script.write_text(gen_docs.render_fish(toy_tree).replace("smimecli", "toycli"))
    (tmp_path / "albums").mkdir()
    got = _fish_complete(
        script,
        [
            "toycli ",
            "toycli --store x nest ",
            "toycli paint --colour ",
            "toycli paint --hash ",
            "toycli paint --out-dir al",
            "toycli nest deep --le",
        ],
        tmp_path,
    )
    assert got == [
        ["nest", "paint"],
        ["deep"],
        ["green", "red"],
        ["sha256", "sha512"],
        ["albums/"],
        ["--level"],
    ]


def _zsh_complete(script: Path, lines: list[list[str]], cwd: Path) -> list[str]:
    """Call the zsh completion function with compsys stubbed out to print what it offers."""
    zsh = require_tool("zsh")
    stubs = (
        "compdef() { :; }\n"
        '_describe() { local -a arr; arr=("${(@P)${@[-1]}}"); '
        'print -r -- "${(j: :)${(@)arr%%:*}}"; }\n'
        'compadd() { print -r -- "${(P)2}"; }\n'
        '_files() { print -r -- "files $*"; }\n'
        "_message() { print -r -- message; }\n"
    )
    calls = []
    for words in lines:
        quoted = " ".join(_q(w) for w in words)
        calls.append(
            f"words=({quoted}); CURRENT={len(words)}; PREFIX={_q(words[-1])}; _smimecli || print"
        )
    program = stubs + f"source {_q(str(script))}\n" + "\n".join(calls)
    proc = subprocess.run(
        [zsh, "-f", "-c", program], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_zsh_completes_the_real_tree(tmp_path: Path) -> None:
    got = _zsh_complete(
        COMPLETIONS / "_smimecli", [["smimecli", *g.path, ""] for g in GROUPS], tmp_path
    )
    assert got == [" ".join(s.path[-1] for s in g.subcommands) for g in GROUPS]


def test_zsh_completes_choices_files_and_folders(toy_tree: Command, tmp_path: Path) -> None:
    script = tmp_path / "_toy"
    script.write_text(gen_docs.render_zsh(toy_tree))
    got = _zsh_complete(
        script,
        [
            ["smimecli", "--store", "x", ""],
            ["smimecli", "paint", "--colour", ""],
            ["smimecli", "paint", "--out-dir", ""],
            ["smimecli", "paint", "--cert", ""],
            ["smimecli", "paint", "in.eml", ""],
            ["smimecli", "nest", "deep", "--"],
        ],
        tmp_path,
    )
    assert got == ["paint nest", "red green", "files -/", "files ", "files ", "--level -h --help"]


def test_reference_lists_every_command_and_option() -> None:
    section = (ROOT / gen_docs.REFERENCE).read_text(encoding="utf-8")
    for cmd in _tree().walk():
        if cmd.subcommands and cmd.path:
            continue
        assert f"#### `{cmd.name}`" in section
        for opt in cmd.options:
            if opt.all_opts != ("-h", "--help"):  # every command has it; not repeated
                assert opt.all_opts[-1] in section, (cmd.name, opt.all_opts)


def test_reference_is_its_own_page_linked_from_the_readme() -> None:
    page = gen_docs.generated_files()[gen_docs.REFERENCE]
    assert page.startswith("# Command reference\n")
    assert "do not edit" in page
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "#### `smimecli encrypt`" not in readme  # the reference left the README
    assert "](docs/reference/cli.md)" in readme
    assert "](reference/cli.md)" in (ROOT / "docs" / "README.md").read_text(encoding="utf-8")


def test_fixed_value_options_complete_their_values() -> None:
    bash = (ROOT / "completions" / "smimecli.bash").read_text()
    fish = (ROOT / "completions" / "smimecli.fish").read_text()
    zsh = (ROOT / "completions" / "_smimecli").read_text()
    for command in ("certs import", "certs list", "certs remove"):
        assert f"'{command}:--store-name') echo '1 choice:my other root ca'" in bash
        assert f"'{command}:--store-name') REPLY='1 choice:my other root ca'" in zsh
    assert "'certs export:--format') echo '1 choice:cer pem p7b pfx sst'" in bash
    assert "-l 'format' -x -a 'cer pem p7b pfx sst'" in fish
    help_text = run_cli(["certs", "export", "--help"], env=WIDE).stdout.decode()
    assert "--format cer|pem|p7b|pfx|sst" in help_text


def test_no_document_cites_a_spec_the_repository_does_not_hold() -> None:
    folders = ("man", "completions", "contrib")
    for folder in folders:
        for path in (ROOT / folder).rglob("*"):
            if path.is_file():
                assert not re.search(r"\bSPEC\b", path.read_text(errors="replace")), path
    for args in (["rules", "check", "--help"], ["rules", "test", "--help"]):
        assert "SPEC" not in run_cli(args, env=WIDE).stdout.decode()


def test_interop_skip_reason_says_what_the_corpus_is(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.conftest as conftest

    monkeypatch.setattr(conftest, "interop_dir", lambda: None)
    with pytest.raises(pytest.skip.Exception) as skipped:
        conftest.require_interop()
    reason = str(skipped.value)
    for word in ("S/MIME", "PKCS#12", "SST", "TNEF", "Thunderbird", "OpenSSL", "MimeKit"):
        assert word in reason
    assert "../shared/interop" in reason and "SMIMECLI_INTEROP_DIR" in reason


# --- smimecli-rules(5), per-command exit statuses, synopses, fixed-value completion ----------


def test_rules_page_describes_every_key_and_value() -> None:
    from smimecli.rules import load
    from smimecli.rules import model as rules

    page = (ROOT / "man" / "smimecli-rules.5").read_text(encoding="utf-8")
    assert page.startswith('.\\" generated by tools/gen_docs.py')
    words = (
        *load._RULE_KEYS,
        *load._SOURCE_KEYS,
        *rules.SOURCE_KINDS,
        *rules.STORE_NAMES,
        *rules.MATCH_MODES,
        *rules.KEY_TRANSPORTS,
        *rules.OAEP_HASHES,
        *rules.MISSING_CERT_POLICIES,
        *rules.cipher_names(),
        "[defaults]",
        "[[rule]]",
    )
    for word in words:
        assert gen_docs.roff(word) in page, word
    for key, value in rules.BUILTIN_DEFAULTS.items():
        shown = str(value).lower()
        assert re.search(
            rf"{re.escape(gen_docs.roff(shown))} \(the default|default {shown}", page
        ) or (f"{key}" in page and "(the default" in page), key
    for section in ("PATTERNS", "ORDER AND OUTCOME", "ERRORS", "EXAMPLE", "SEE ALSO"):
        assert f".SH {section}\n" in page or f'.SH "{section}"\n' in page, section
    require_tool("man")
    text = _man_text(ROOT / "man" / "smimecli-rules.5")
    for phrase in ("first rule in file order", "trailing dot", "xn--", "78", "case", "byte"):
        assert phrase in text, phrase


def test_rules_page_example_is_a_valid_rules_file(tmp_path: Path) -> None:
    from smimecli.rules.load import load_rules
    from tools import man_rules

    (tmp_path / "board-certs").mkdir()
    path = tmp_path / "rules.toml"
    path.write_text(man_rules.EXAMPLE)
    loaded = load_rules(path)
    assert [r.name for r in loaded.rules] == ["partners", "board", "legal"]
    assert loaded.rules[0].cipher == "aes256" and loaded.rules[0].key_transport == "rsa-oaep"


def test_rules_page_is_linked_from_the_main_page_and_rules_help() -> None:
    assert "\\fBsmimecli\\-rules\\fR(5)" in _page(TREE).split(".SH SEE ALSO")[1]
    for args in (["encrypt", "--help"], ["rules", "check", "--help"], ["serve", "--help"]):
        assert "smimecli-rules" in run_cli(args, env=WIDE).stdout.decode(), args


def test_no_spec_citation_in_the_package() -> None:
    for path in (ROOT / "smimecli").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\bSPEC\b", text), path


def test_every_command_has_its_own_exit_statuses() -> None:
    from smimecli.errors import ExitStatus
    from tools.man_statuses import STATUSES

    known = {int(s) for s in ExitStatus} | {1}  # 1: certs list --expiring found some
    keys = {c.key for c in COMMANDS if c.path}
    assert set(STATUSES) == keys, set(STATUSES) ^ keys
    for key, rows in STATUSES.items():
        codes = [code for code, _ in rows]
        assert codes == sorted(set(codes)), key
        assert set(codes) <= known and {0, 64} <= set(codes), key
        assert all(text.endswith(".") and "\n" not in text for _, text in rows), key
    for cmd in COMMANDS:
        if not cmd.path:
            continue
        section = _page(cmd).split(".SH EXIT STATUS\n")[1].split("\n.SH ")[0]
        listed = [int(c) for c in re.findall(r"\.TP\n\\fB(\d+)\\fR\n", section)]
        assert listed == [code for code, _ in STATUSES[cmd.key]], cmd.name
    export = _page(next(c for c in COMMANDS if c.path == ("certs", "export")))
    assert "encrypted, or passed through" not in export


def test_synopses_do_not_double_brackets_or_dots() -> None:
    for cmd in COMMANDS:
        synopsis = _page(cmd).split(".SH SYNOPSIS\n")[1].split("\n.SH ")[0]
        assert "[\\fI[" not in synopsis and "]...\\fR..." not in synopsis, cmd.name
    encrypt = _page(next(c for c in COMMANDS if c.path == ("encrypt",)))
    assert "\\fBencrypt\\fR [\\fIOPTIONS\\fR] [\\fIINPUT\\fR...]\n" in encrypt
    inspect = _page(next(c for c in COMMANDS if c.path == ("inspect",)))
    assert "\\fBinspect\\fR [\\fIOPTIONS\\fR] [\\fIINPUT\\fR]\n" in inspect


# Options whose value is free text (a name, a number, a date, an address...), by command.
FREE_TEXT = {
    ("", "--store-password-env"),
    ("encrypt", "--to"),
    ("encrypt", "--sign-with"),
    ("encrypt", "--recipient"),
    ("encrypt", "--jobs"),
    ("encrypt", "--password-env"),
    ("decrypt", "--password-env"),
    ("sign", "--signer"),
    ("sign", "--password-env"),
    *(
        (cmd, opt)
        for cmd in ("gen-root", "gen-ca", "issue-user")
        for opt in (
            "--subject",
            "--key-length",
            "--days",
            "--not-before",
            "--not-after",
            "--friendly-name",
            "--password-env",
        )
    ),
    ("gen-root", "--key-usage"),  # a comma list of names, not one value
    ("gen-ca", "--key-usage"),
    ("gen-ca", "--signer"),
    ("gen-ca", "--crl-url"),
    ("issue-user", "--email"),
    ("issue-user", "--upn"),
    ("issue-user", "--signer"),
    ("issue-user", "--signer-password-env"),
    ("issue-user", "--crl-url"),
    ("gen-crl", "--signer"),
    ("gen-crl", "--revoke"),
    ("gen-crl", "--next-update"),
    ("serve", "--listen"),
    ("serve", "--relay"),
    ("serve", "--workers"),
    ("serve", "--max-size"),
    ("serve", "--max-sessions"),
    ("serve", "--journal"),  # a file or '-'
    ("serve", "--drain-timeout"),
    ("certs import", "--password-env"),
    ("certs import", "--store-password-env"),
    ("certs export", "--password-env"),
    ("certs export", "--store-password-env"),
    ("certs list", "--email"),
    ("certs list", "--expiring"),
    ("rules test", "--recipient"),
}

_LISTS_VALUES = re.compile(
    r"\b[a-z][\w-]*\|[a-z][\w-]*|\bone of\b|: ([a-z][\w-]*, )+[a-z][\w-]* or "
)


def test_every_fixed_value_option_completes_its_values() -> None:
    """A text option must be known free text; one whose help lists values must have choices."""
    unknown = []
    for cmd in COMMANDS:
        for opt in cmd.options:
            where = (cmd.key, opt.all_opts[-1])
            if opt.kind is ValueKind.TEXT and where not in FREE_TEXT:
                unknown.append(where)
            if opt.kind is not ValueKind.CHOICE and opt.takes_value:
                assert not _LISTS_VALUES.search(opt.metavar + " " + opt.help), where
            if opt.kind is ValueKind.CHOICE:
                assert where not in FREE_TEXT and len(opt.choices) > 1, where
    assert not unknown, f"free text or fixed values? add choices or list in FREE_TEXT: {unknown}"
    stale = FREE_TEXT - {(c.key, o.all_opts[-1]) for c in COMMANDS for o in c.options}
    assert not stale, stale


def test_bash_completes_fixed_values_of_real_options(tmp_path: Path) -> None:
    got = _bash_complete(
        COMPLETIONS / "smimecli.bash",
        [
            ["smimecli", "encrypt", "--cipher", "aes2"],
            ["smimecli", "encrypt", "--recipient-id", ""],
            ["smimecli", "encrypt", "--on-missing-cert", ""],
            ["smimecli", "certs", "verify", "--purpose", ""],
            ["smimecli", "issue-user", "--profile", ""],
            ["smimecli", "gen-root", "--key-algorithm", "ec"],
            ["smimecli", "sign", "--hash", ""],
        ],
        tmp_path,
    )
    assert [sorted(r) for r in got] == [
        ["aes256", "aes256-gcm"],
        ["issuer-serial", "ski"],
        ["pass", "reject", "tempfail"],
        ["both", "encrypt", "sign"],
        ["powershell", "strict"],
        ["ecdsa-p256", "ecdsa-p384"],
        ["sha256", "sha384", "sha512"],
    ]


def test_gateway_examples_use_the_rules_file_the_guide_shows() -> None:
    """The guide's setup block writes rules.toml; it must be the file the reader sees."""
    guide = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    shown = re.search(r"^```toml\n(# /etc/smimecli/rules\.toml.*?)^```$", guide, re.M | re.S)
    written = re.search(r"^cat > rules\.toml <<'EOF'\n(.*?)^EOF$", guide, re.M | re.S)
    assert shown and written
    assert written.group(1) == shown.group(1)
