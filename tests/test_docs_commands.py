"""Every ``harness ...`` and ``make ...`` command shown in a document is one that works.

The documents are every Markdown file in the repository (README.md, docs/*.md, and the READMEs
beside ray_cluster/ and grafana/). A command is shown either in a fenced code block (shell lines,
or the ``run:``/``script:`` lines of a CI snippet in YAML) or as an inline code span that starts
with ``harness `` or ``make ``. Synopsis notation is read as a user reads it: ``[...]`` is an
optional part that is checked as if given, ``A | B | C`` after a sub-command lists sibling
sub-commands, ``...`` repeats, and UPPER-CASE words are placeholders for values.

Each ``harness`` command is parsed against the real Typer/click application with click's own
parser, without running it: the sub-command exists, every option exists and gets its value, and
the number of arguments is right. The cheap ones that need no service (``validate`` and ``plan``
of a scenario that exists, ``schema``, ``--help``, ``--version``) are also run in-process and
must exit 0. Each ``make`` target shown must exist in the Makefile. A failure names the document
and the line of the command.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

# Typer 0.29 runs on its own copy of click (typer._click); older ones on click itself.
try:
    from typer._click import core as click_core
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - typer before 0.29
    from click import core as click_core  # type: ignore[no-redef]
    from click import exceptions as click_errors  # type: ignore[no-redef]

from harness.cli import app

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^ {0,3}```(\S*)[^\n]*\n(.*?)^ {0,3}```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<!`)`((?:harness|make) [^`\n]+)`(?!`)")
SHELL_LANGUAGES = {"", "sh", "bash", "shell", "console", "text", "yaml", "yml"}
OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "{", "}"}
KEYWORDS = {"then", "else", "do", "if", "elif", "while", "until", "!", "time", "exec", "sudo", "env"}
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(?:[|:][A-Za-z0-9_-]+)*$")
#: Options whose commands need a service or change the machine: such commands are parsed, never run.
SERVICE_OPTIONS = {"--ray-address", "--results-url", "--url"}


@dataclass(frozen=True)
class Shown:
    """One command as a document shows it."""

    doc: str
    line: int
    program: str  # "harness" or "make"
    args: tuple[str, ...]
    inline: bool = False  # an inline code span in prose: it may name a command without its arguments

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: `{self.program} {' '.join(self.args)}`"


def _documents() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "*.md"], cwd=ROOT, capture_output=True, text=True
    )
    names = listed.stdout.split() if listed.returncode == 0 else []
    paths = [ROOT / n for n in names if (ROOT / n).is_file()] or sorted(ROOT.glob("**/*.md"))
    return [p for p in paths if ".venv" not in p.parts and "tests" not in p.relative_to(ROOT).parts[:1]]


def _shell_lines(language: str, body: str, first: int) -> Iterator[tuple[int, str]]:
    """(line number, shell text) of a fenced block, continuation lines joined."""
    pending, start = "", first
    for offset, raw in enumerate(body.splitlines()):
        line = raw
        if language in ("yaml", "yml"):
            # CI snippets: `- run: cmd`, `run: cmd`, `- cmd` in a script list, or a `run: |` body.
            line = re.sub(r"^\s*(?:-\s+)?(?:(?:run|script|before_script|after_script|command)\s*:\s*)?", "", raw)
            if re.match(r"^[\w.-]+\s*:(\s|$)", line):  # any other YAML key: not a command
                continue
        if not pending:
            start = first + offset
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        yield start, pending
        pending = ""
    if pending:
        yield start, pending


def _tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in prose: take the words as they are
        return text.split()


def _commands_in(text: str) -> Iterator[tuple[str, list[str]]]:
    """(program, arguments) of each harness/make invocation in command position in one shell line;
    a segment that follows a lone `|` comes as ("|", words): a pipe, or a sibling sub-command."""
    # A lone `|` between words is a pipe or a synopsis alternative; keep it as its own token.
    tokens = _tokens(re.sub(r"\s\|\s", " ; | ; ", f" {text} "))
    segments: list[tuple[bool, list[str]]] = []
    current: list[str] = []
    after_pipe = False
    for token in [*tokens, ";"]:
        if token in OPERATORS or token == "|":
            if current:
                segments.append((after_pipe, current))
                current, after_pipe = [], False
            after_pipe = after_pipe or token == "|"
            continue
        current.append(token)
    for piped, words in segments:
        while words and (words[0] in KEYWORDS or re.match(r"^\w+=", words[0]) or words[0].startswith("$(")):
            words = words[1:]
        if not words:
            continue
        program = words[0].rsplit("/", 1)[-1]
        if any("<TAB>" in w for w in words):
            continue  # a completion demo (`harness gr<TAB>`), not a command line
        if program in ("harness", "make"):
            yield program, _without_redirections(words[1:])
        elif piped:
            yield "|", words


def _without_redirections(words: list[str]) -> list[str]:
    """``> summary.json``, ``2>/dev/null``, ``< in`` are the shell's, not the command's."""
    out: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif re.fullmatch(r"\d*(>>?|<|&>)", word):
            skip = True  # the file name follows
        elif not re.match(r"^\d*(>>?|<|&>)\S", word):
            out.append(word)
    return out


def _shown() -> list[Shown]:
    found: list[Shown] = []
    for path in _documents():
        doc = str(path.relative_to(ROOT))
        text = path.read_text(encoding="utf-8")
        fenced: list[tuple[int, int]] = []
        for match in FENCE.finditer(text):
            fenced.append(match.span())
            language, body = match.group(1).lower(), match.group(2)
            if language not in SHELL_LANGUAGES:
                continue
            first = text.count("\n", 0, match.start(2)) + 1
            for line, shell in _shell_lines(language, body, first):
                found += _with_alternatives(doc, line, shell)
        for match in INLINE.finditer(text):
            if any(a <= match.start() < b for a, b in fenced):
                continue
            found += _with_alternatives(doc, text.count("\n", 0, match.start()) + 1, match.group(1), inline=True)
    return found


def _with_alternatives(doc: str, line: int, shell: str, inline: bool = False) -> list[Shown]:
    shown: list[Shown] = []
    last: Shown | None = None
    for program, args in _commands_in(shell):
        if program == "|":
            # `harness demo up | down | status`: `down` is a sibling of `up`; anything else is a pipe.
            if last is not None and last.program == "harness" and _sibling(last.args, args[0]):
                path = _command_path(last.args)
                last = Shown(doc, line, "harness", (*path[:-1], *args), inline)
                shown.append(last)
            continue
        last = Shown(doc, line, program, tuple(args), inline)
        shown.append(last)
    return shown


def _is_group(command: click_core.Command) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def _root() -> click_core.Command:
    command = typer.main.get_command(app)
    assert _is_group(command)
    return command


def _command_path(args: tuple[str, ...] | list[str]) -> list[str]:
    group: click_core.Command = _root()
    path: list[str] = []
    for arg in args:
        if not _is_group(group) or arg not in group.commands:
            break
        path.append(arg)
        group = group.commands[arg]
    return path


def _sibling(args: tuple[str, ...], word: str) -> bool:
    path = _command_path(args)
    parent: click_core.Command = _root()
    for name in path[:-1]:
        assert _is_group(parent)
        parent = parent.commands[name]
    return bool(path) and _is_group(parent) and word in parent.commands


def _unsynopsis(args: tuple[str, ...]) -> list[str]:
    """Arguments as a user would type them: optional brackets opened, repeats and pipes dropped."""
    out = []
    for arg in args:
        if arg in ("...", "[", "]", "|", "[...]"):
            continue
        if arg.startswith("[") and not arg.startswith("[["):
            arg = arg[1:]
        while arg.endswith("]") and arg.count("]") > arg.count("["):
            arg = arg[:-1]
        arg = arg.removesuffix("...")
        if "|" in arg and arg.startswith("-") and "=" not in arg:
            arg = arg.split("|", 1)[0]  # `[-o|--output FILE]`: either spelling
        if arg:
            out.append(arg)
    return out


def _parse(args: list[str], complete: bool = True) -> tuple[list[str], click_core.Command, dict[str, object]]:
    """Parse ``harness ARGS`` with click's parser (no callbacks, nothing run); ``complete=False``
    for a command named in prose, whose required arguments may be left out.

    Returns the sub-command path, the command and the parsed values; raises click_errors.UsageError.
    """
    command: click_core.Command = _root()
    ctx = click_core.Context(command, info_name="harness")
    path: list[str] = []
    rest = list(args)
    while _is_group(command):
        values, rest, _ = command.make_parser(ctx).parse_args(list(rest))
        if not rest:
            if path or not complete or any(a.startswith("-") for a in args):  # `harness --version`
                break
            raise click_errors.UsageError("no sub-command")
        name = rest.pop(0)
        if name not in command.commands:
            where = f" in `harness {' '.join(path)}`" if path else ""
            raise click_errors.UsageError(f"no such command {name!r}{where}")
        path.append(name)
        command = command.commands[name]
        ctx = click_core.Context(command, info_name=name, parent=ctx)
    if _is_group(command):
        return path, command, {}
    values, extra, _ = command.make_parser(ctx).parse_args(rest)
    if "--help" in args or not complete:
        return path, command, values
    if extra:
        raise click_errors.UsageError(f"unexpected extra arguments {extra}")
    for param in command.params:
        if param.param_type_name == "argument" and param.required and values.get(param.name or "") in (None, ()):
            raise click_errors.UsageError(f"missing argument {(param.name or '').upper()}")
    return path, command, values


SHOWN = _shown()
HARNESS = [c for c in SHOWN if c.program == "harness"]
MAKE = [c for c in SHOWN if c.program == "make"]


def test_the_documents_show_commands() -> None:
    docs = {c.doc for c in HARNESS}
    assert "README.md" in docs and "docs/scenarios.md" in docs and "docs/ci.md" in docs, sorted(docs)
    assert len(HARNESS) >= 40, len(HARNESS)
    assert {c.args[0] for c in MAKE if c.args} >= {"demo", "test"}


def test_every_harness_command_shown_parses() -> None:
    broken = []
    for shown in HARNESS:
        args = _unsynopsis(shown.args)
        try:
            try:
                _parse(args, complete=not shown.inline)
            except click_errors.BadOptionUsage:
                if not (shown.inline and args[-1].startswith("-")):
                    raise
                # prose naming an option (`harness plan --ray-address`) leaves out its value
                _parse([*args, "VALUE"], complete=False)
        except click_errors.ClickException as exc:
            broken.append(f"{shown}: {exc.format_message()}")
    assert not broken, "\n".join(broken)


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    targets: set[str] = set()
    for match in re.finditer(r"^([\w.%/-]+(?:[ \t]+[\w.%/-]+)*)[ \t]*:(?!=)", text, re.MULTILINE):
        targets.update(match.group(1).split())
    return targets


def test_every_make_target_shown_exists() -> None:
    targets = _makefile_targets()
    assert {"demo", "test"} <= targets
    missing = [
        f"{shown}: no target {arg!r} in the Makefile"
        for shown in MAKE
        for arg in shown.args
        if not arg.startswith("-") and "=" not in arg and arg not in targets
    ]
    assert not missing, "\n".join(missing)


def _runnable(shown: Shown) -> list[str] | None:
    """The arguments to run for real, or None when the command needs a service or a missing file."""
    args = _unsynopsis(shown.args)
    if any(a.split("=", 1)[0] in SERVICE_OPTIONS for a in args) or any(PLACEHOLDER.match(a) for a in args):
        return None
    if "--help" in args or args == ["--version"]:
        return args
    try:
        path, _, values = _parse(args, complete=not shown.inline)
    except click_errors.ClickException:
        return None
    if path in (["validate"], ["plan"]) and (ROOT / str(values.get("scenario"))).is_file():
        return args if all(not a.startswith("-") or a in ("--json", "--quiet") for a in args) else None
    if path == ["schema"]:
        return args
    return None


RUNNABLE = [(shown, args) for shown in HARNESS if (args := _runnable(shown)) is not None]


def test_some_commands_shown_are_run() -> None:
    assert {args[0] for _, args in RUNNABLE} >= {"validate", "plan", "schema"}, RUNNABLE


@pytest.mark.parametrize(("shown", "args"), RUNNABLE, ids=[str(s) for s, _ in RUNNABLE])
def test_cheap_commands_shown_run(
    shown: Shown, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    if args[0] == "schema":
        monkeypatch.chdir(tmp_path)  # it may write a file
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, f"{shown} exited {result.exit_code}:\n{result.output}"


def test_a_failing_command_is_reported_with_its_document_and_line(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# t\n\n```sh\nharness validate a.yaml\nharness valdate a.yaml --nope\n```\n")
    found = []
    for match in FENCE.finditer(doc.read_text()):
        first = doc.read_text().count("\n", 0, match.start(2)) + 1
        for line, shell in _shell_lines(match.group(1), match.group(2), first):
            found += _with_alternatives("doc.md", line, shell)
    assert [str(s) for s in found] == [
        "doc.md:4: `harness validate a.yaml`",
        "doc.md:5: `harness valdate a.yaml --nope`",
    ]
    _parse(list(found[0].args))
    with pytest.raises(click_errors.UsageError, match="no such command 'valdate'"):
        _parse(list(found[1].args))
    with pytest.raises(click_errors.NoSuchOption):
        _parse(["validate", "a.yaml", "--nope"])
    with pytest.raises(click_errors.UsageError, match="extra arguments"):
        _parse(["validate", "a.yaml", "b.yaml"])
    with pytest.raises(click_errors.UsageError, match="missing argument"):
        _parse(["validate"])
    with pytest.raises(click_errors.BadOptionUsage):
        _parse(["run", "x.yaml", "--run-id"])


def test_synopsis_notation_is_read_as_a_user_reads_it() -> None:
    shown = _with_alternatives("d.md", 1, "harness demo up [--restart-delay S] | down | status   # the demo")
    assert [s.args for s in shown] == [("demo", "up", "[--restart-delay", "S]"), ("demo", "down"), ("demo", "status")]
    assert _unsynopsis(shown[0].args) == ["demo", "up", "--restart-delay", "S"]
    piped = _with_alternatives("d.md", 1, "harness runs --limit 3 | head -n 2 && make demo")
    assert [(s.program, s.args) for s in piped] == [("harness", ("runs", "--limit", "3")), ("make", ("demo",))]
    redirected = _with_alternatives("d.md", 1, "harness run x.yaml --json > summary.json 2>/dev/null")
    assert [s.args for s in redirected] == [("run", "x.yaml", "--json")]
    assert _with_alternatives("d.md", 1, "harness gr<TAB>") == []
