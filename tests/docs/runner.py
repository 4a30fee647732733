"""The examples of the README and docs/, run by the tests: Sybil finds the blocks, this module runs them.

Sybil because it is maintained, lexes Markdown's fenced blocks (and directives in HTML comments) with their line
numbers, and makes each example a pytest item with its own markers; pytest-examples runs Python examples only, and
a cram-style runner would mean parsing Markdown by hand. What Sybil does not do, running shell transcripts and
writing their new outputs back, is the small part below.

A fenced block's info string is its language, then options (GitHub colours by the first word and ignores the rest):

- ```` ```console ````: a transcript. Each `$ ` line is a command, run by bash in the document's own scratch folder
  (which links specs/, tests/, answers/, benchmarks/ and docs/ of this checkout); `archcalc`, `python` and `python3`
  there are this checkout's, with this interpreter. The lines under it, up to the next `$ `, are what it prints,
  stdout and stderr together as a terminal shows them, then `(exit N)` when its status is not 0. A line `...`
  stands for any number of lines. Options: `columns=N` (the width a pipe is laid out for; 80 by default),
  `machine` (what the machine decides, timings and the like: every number is left out of the comparison, and runs
  of blanks are one blank), `slow` (marked slow), and the modules it needs (`torch`, `onnx`, `matplotlib`,
  `transformers`: marked, skipped where missing).
- ```` ```python ````: run in the document's namespace, in the scratch folder; a block of `>>>` examples is
  compared as doctest does (same options). ```` ```python by-test ````: run by a test of its own instead, which
  needs to do more around it (docs/architecture.md's layer kind, registered, checked against torch, removed:
  tests/test_architecture.py).
- any block with `file=NAME` (```` ```toml file=answers.toml ````): written to NAME in the scratch folder, for the
  commands after it to read. Not a test of its own.

`<!-- invisible-code-block: console ... -->` runs commands that the reader does not need to see (setting up a
folder of answers files). The examples of one document run in order and share its folder and namespace.

`ARCHCALC_UPDATE_DOCS=1 python -m pytest README.md docs` writes what each example printed where it differs (an
elided `...` stays, the lines around it are matched to the new output); read the diff before committing it.
"""

from __future__ import annotations

import contextlib
import difflib
import doctest
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from sybil import Document, Example, Region
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer, FencedCodeBlockLexer

ROOT = Path(__file__).resolve().parents[2]
UPDATE = "ARCHCALC_UPDATE_DOCS"
LINKED = ("specs", "tests", "answers", "benchmarks", "docs")  # what a command may read, by the path a reader types
MODULES = ("torch", "torchvision", "onnx", "matplotlib", "transformers")  # an option naming one: the block needs it
ELISION = "..."
EXIT = re.compile(r"^\(exit (\d+)\)$")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
TIMEOUT = 600


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its options, its text and where the text lies in the document."""

    language: str
    options: frozenset[str]
    source: str
    start: int  # of the source in the document's text
    columns: int = 80
    file: str | None = None

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(m for m in MODULES if m in self.options)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(m for m in self.needs if _absent(m))


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ValueError:  # sys.modules[module] is None: blocked, as if not installed
        return True


def read_info(info: str) -> tuple[str, frozenset[str], int, str | None]:
    """```console columns=100 slow → ("console", {"slow", ...}, 100, None)."""
    language, *words = info.split()
    columns, file, options = 80, None, set()
    for word in words:
        name, _, value = word.partition("=")
        if name == "columns":
            columns = int(value)
        elif name == "file":
            file = value
        else:
            options.add(word)
    return language, frozenset(options), columns, file


class Parser:
    """Sybil's parser: the fenced blocks (and invisible ones) that are examples, each with its evaluator."""

    def __init__(self) -> None:
        self.lexers = [
            FencedCodeBlockLexer(language=r".+", mapping={"language": "info", "source": "source"}),
            DirectiveInHTMLCommentLexer(directive=r"invisible-code-block", arguments=".+",
                                        mapping={"arguments": "info", "source": "source"}),
        ]

    def __call__(self, document: Document):
        for lexer in self.lexers:
            for region in lexer(document):
                language, options, columns, file = read_info(region.lexemes["info"])
                source = region.lexemes["source"]
                block = Block(language, options, str(source), region.start + source.offset, columns, file)
                if file:
                    FILES.setdefault(str(document.path), []).append(block)
                evaluator = (write_file if file else run_console if language == "console"
                             else run_python if language == "python" and "by-test" not in options else None)
                if evaluator is not None:
                    yield Region(region.start, region.end, parsed=block, evaluator=evaluator)


# --- the scratch folder and the commands' environment ---------------------------------------------------------


def setup(namespace: dict) -> None:
    """A document's scratch folder, with this checkout's files linked in and its own `archcalc` on PATH."""
    folder = Path(tempfile.mkdtemp(prefix="archcalc-docs-"))
    for name in LINKED:
        (folder / name).symlink_to(ROOT / name, target_is_directory=True)
    tools = folder / ".bin"
    tools.mkdir()
    script = tools / "archcalc"
    script.write_text(f"#!{sys.executable}\nfrom archcalc.cli.main import run\nrun()\n", encoding="utf-8")
    script.chmod(0o755)
    for name in ("python", "python3"):
        (tools / name).symlink_to(sys.executable)
    namespace["__folder__"] = folder


def teardown(namespace: dict) -> None:
    folder = namespace.pop("__folder__", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def environment(folder: Path, columns: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "PYTEST_CURRENT_TEST")}
    env.update(PATH=f"{folder / '.bin'}{os.pathsep}{env.get('PATH', '')}", COLUMNS=str(columns), TERM="dumb",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p))
    return env


@dataclass
class Command:
    text: str  # as shown, without "$ " and "> " (a continuation line, as bash's prompt shows it)
    expected: list[str] = field(default_factory=list)
    gap: int = 0  # blank lines after the output: the block's layout, not output


def commands(source: str) -> list[Command]:
    """A transcript's commands, each with the lines it is shown to print."""
    found: list[Command] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            text = line[2:]
            while i + 1 < len(lines) and (text.endswith("\\") or lines[i + 1].startswith("> ")):
                i += 1
                text += "\n" + (lines[i][2:] if lines[i].startswith("> ") else lines[i])
            found.append(Command(text))
        elif found:
            found[-1].expected.append(line.rstrip())
        elif line.strip():
            raise ValueError(f"a transcript starts with a command ($ ...), not {line!r}")
        i += 1
    for command in found:
        while command.expected and not command.expected[-1]:
            command.expected.pop()
            command.gap += 1
    return found


def shown_command(text: str) -> str:
    """The command as a transcript shows it: `$ ` before it, `> ` before each line a quote continues."""
    first, *rest = text.split("\n")
    return "\n".join([f"$ {first}", *(line if before.endswith("\\") else f"> {line}"
                                      for before, line in zip([first, *rest], rest))])


def run(command: str, folder: Path, columns: int) -> list[str]:
    """What the command prints, as lines, and `(exit N)` after them when its status is not 0."""
    done = subprocess.run(["bash", "-c", command], cwd=folder, env=environment(folder, columns), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    text = done.stdout.decode("utf-8", errors="backslashreplace")
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return [*lines, f"(exit {done.returncode})"] if done.returncode else lines


# --- comparing, and writing the new output ------------------------------------------------------------------------


def _normal(line: str, machine: bool) -> str:
    return " ".join(NUMBER.sub("#", line).split()) if machine else line


def matches(expected: list[str], actual: list[str], machine: bool = False) -> bool:
    """Whether the actual lines are the expected ones, a line `...` standing for any number of lines."""
    pattern = [None if line.strip() == ELISION else _normal(line, machine) for line in expected]
    lines = [_normal(line, machine) for line in actual]
    # reachable[j]: the pattern so far can end just before lines[j]
    reachable = [True] + [False] * len(lines)
    for item in pattern:
        if item is None:
            first = reachable.index(True) if True in reachable else len(reachable)
            reachable = [j >= first for j in range(len(reachable))]
        else:
            reachable = [False] + [reachable[j] and lines[j] == item for j in range(len(lines))]
    return reachable[-1]


def regenerate(expected: list[str], actual: list[str]) -> list[str]:
    """The expected lines rewritten from the actual ones: each run of shown lines is replaced by the run of actual
    lines most like it, in order, an elision kept where it was (the whole output where there is none)."""
    if not any(line.strip() == ELISION for line in expected):
        return list(actual)
    runs: list[list[str] | None] = []
    for line in expected:
        if line.strip() == ELISION:
            runs.append(None)
        elif runs and runs[-1] is not None:
            runs[-1].append(line)
        else:
            runs.append([line])
    out: list[str] = []
    at = 0
    for k, shown in enumerate(runs):
        if shown is None:
            out.append(ELISION)
            continue
        if k == 0:  # the output's first lines
            begin = 0
        elif k == len(runs) - 1:  # its last lines
            begin = max(at, len(actual) - len(shown))
        else:
            candidates = range(at, max(at, len(actual) - len(shown)) + 1)
            begin = max(candidates, key=lambda b: (*_likeness(shown, actual[b:b + len(shown)]), -b))
        window = actual[begin:begin + len(shown)]
        out.extend(window)
        at = begin + len(window)
    return out


def _likeness(shown: list[str], window: list[str]) -> tuple[int, float]:
    """How like the shown lines a window of the output is: the lines' common beginnings first (a row's label stays
    where its numbers change), then their likeness as text."""
    prefix = sum(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))) for a, b in zip(shown, window))
    return prefix, difflib.SequenceMatcher(None, "\n".join(shown), "\n".join(window)).ratio()


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    text: str


EDITS: dict[str, list[Edit]] = {}  # document path -> the example sources to write, when ARCHCALC_UPDATE_DOCS=1


def updating() -> bool:
    return os.environ.get(UPDATE) == "1"


def apply_edits() -> list[str]:
    """Write the recorded outputs into their documents; the paths written."""
    written = []
    for path, edits in EDITS.items():
        text = Path(path).read_text(encoding="utf-8")
        for edit in sorted(edits, key=lambda e: e.start, reverse=True):
            text = text[:edit.start] + edit.text + text[edit.end:]
        Path(path).write_text(text, encoding="utf-8")
        written.append(path)
    EDITS.clear()
    return written


def _differs(example: Example, new_source: str, message: str) -> str | None:
    block: Block = example.parsed
    if updating():
        if example.document.text[block.start:block.start + len(block.source)] != block.source:
            return message + "\n(an indented block is not rewritten: write its output by hand, or move it out of the list)"
        EDITS.setdefault(example.path, []).append(Edit(block.start, block.start + len(block.source), new_source))
        return None
    return message


# --- the evaluators ---------------------------------------------------------------------------------------------


# document path -> its file blocks: an example finds the files written above it even where the selection (-m slow)
# left their own blocks out
FILES: dict[str, list[Block]] = {}


def write_file(example: Example) -> None:
    _write(example.namespace["__folder__"], example.parsed)


def _write(folder: Path, block: Block) -> None:
    path = folder / block.file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block.source, encoding="utf-8")


def _files_above(example: Example) -> None:
    """The document's file blocks above this example, written if they are not there yet."""
    folder = example.namespace["__folder__"]
    for block in FILES.get(str(example.path), []):
        if block.start < example.parsed.start and not (folder / block.file).exists():
            _write(folder, block)


def run_console(example: Example) -> str | None:
    _files_above(example)
    block: Block = example.parsed
    folder = example.namespace["__folder__"]
    shown, failures = [], []
    for command in commands(block.source):
        actual = run(command.text, folder, block.columns)
        ok = matches(command.expected, actual, "machine" in block.options)
        if not ok:
            diff = "\n".join(difflib.unified_diff(command.expected, actual, "shown", "printed", lineterm="", n=2))
            failures.append(f"$ {command.text}\n{diff}")
        output = command.expected if ok else regenerate(command.expected, actual)
        shown.append("\n".join([shown_command(command.text), *output, *[""] * command.gap]))
    if not failures:
        return None
    new_source = "\n".join(shown) + "\n"
    return _differs(example, new_source, "the example prints otherwise (ARCHCALC_UPDATE_DOCS=1 writes what it prints):\n"
                    + "\n\n".join(failures))


@contextlib.contextmanager
def _inside(folder: Path):
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _run_doctest_example(source: str, namespace: dict) -> str:
    """What one `>>>` example prints as doctest would see it: stdout, the value's repr, or the exception's last line."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(source, "<docs>", "single"), namespace)
    except Exception as error:  # shown as doctest shows an expected exception
        return out.getvalue() + "Traceback (most recent call last):\n    ...\n" + traceback.format_exception_only(error)[-1]
    return out.getvalue()


def run_python(example: Example) -> str | None:
    _files_above(example)
    block: Block = example.parsed
    namespace = example.namespace
    with _inside(namespace["__folder__"]):
        if ">>>" not in block.source:
            exec(compile(block.source, f"{example.path}:{example.line}", "exec"), namespace)
            return None
        parser, checker = doctest.DocTestParser(), doctest.OutputChecker()
        pieces = parser.parse(block.source)
        failures, rebuilt = [], []
        for piece in pieces:
            if not isinstance(piece, doctest.Example):
                rebuilt.append(piece)
                continue
            got = _run_doctest_example(piece.source, namespace)
            want = piece.want if piece.exc_msg is None else "Traceback (most recent call last):\n    ...\n" + piece.exc_msg
            if checker.check_output(want, got, doctest.ELLIPSIS) or (
                piece.exc_msg is not None and got.endswith(piece.exc_msg)
            ):
                rebuilt.append(_example_text(piece, want))
            else:
                failures.append(f">>> {piece.source.rstrip()}\nshown:   {want!r}\nprinted: {got!r}")
                rebuilt.append(_example_text(piece, got))
    if not failures:
        return None
    return _differs(example, "".join(rebuilt), "the example prints otherwise (ARCHCALC_UPDATE_DOCS=1 writes what it prints):\n"
                    + "\n".join(failures))


def _example_text(piece: doctest.Example, want: str) -> str:
    indent = " " * piece.indent
    lines = piece.source.rstrip("\n").split("\n")
    text = [indent + ">>> " + lines[0], *(indent + "... " + line for line in lines[1:])]
    text += [indent + line for line in want.rstrip("\n").split("\n")] if want else []
    return "\n".join(text) + "\n"
