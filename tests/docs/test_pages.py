"""The README and docs/ as a new user meets them: the README short, every flag of every command in docs/cli.md,
every file and link they (and the code) cite present, every command shown in a block the tests run, and no words
about how the project is run."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from archcalc.cli.main import main
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<info>[^\n`]*)$", re.MULTILINE)
# pages another part of the project writes: cited already, not here yet
PENDING: set[str] = set()  # a page cited before it exists (none now)


def blocks(text: str):
    """(info string, body, line) of each fenced block."""
    found, open_ = [], None
    for match in FENCE.finditer(text):
        if open_ is None:
            open_ = match
        elif match.group("fence")[0] == open_.group("fence")[0] and not match.group("info").strip():
            line = text.count("\n", 0, open_.start()) + 1
            found.append((open_.group("info").strip(), text[open_.end() + 1:match.start()], line))
            open_ = None
    return found


def prose(text: str) -> str:
    """The text outside fenced blocks (what a block prints may say anything its command prints)."""
    out, at = [], 0
    for match in re.finditer(r"(?ms)^[ \t]*(```+|~~~+)[^\n]*\n.*?^[ \t]*\1[ \t]*$", text):
        out.append(text[at:match.start()])
        at = match.end()
    return "".join(out) + text[at:]


def test_the_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) < 250


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


COMMANDS = list(_commands(main))


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(path) for path, _ in COMMANDS])
def test_every_flag_of_every_command_is_in_the_cli_page(path, command):
    """docs/cli.md runs `archcalc COMMAND --help` for each command (its examples are compared with what they print),
    so each flag is there as click declares it; a command added without its block fails here."""
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert f"$ archcalc {' '.join(path)} --help\n" in page, f"docs/cli.md has no `$ archcalc {' '.join(path)} --help` block"
    for parameter in command.params:
        if isinstance(parameter, click.Option):
            for flag in parameter.opts + parameter.secondary_opts:
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", page), f"{flag} of {' '.join(path)}"


def test_the_cli_page_lists_every_command():
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in main.commands:
        assert f"\n## {name}\n" in page, name


def _cited(text: str) -> set[str]:
    """Repository paths a text cites: docs/x.md, tests/..., benchmarks/..., specs/..., answers/..., archcalc/..."""
    pattern = r"(?<![\w./-])((?:docs|tests|benchmarks|specs|answers|archcalc)/[\w./-]*[\w/])"
    return {m.rstrip("/.") for m in re.findall(pattern, text)}


def _exists(cited: str) -> bool:
    path = ROOT / cited
    if "*" in cited or cited in PENDING or any(re.fullmatch(r"[A-Z_]+|[a-z]|test_[a-z]", Path(part).stem)
                                               for part in path.relative_to(ROOT).parts):
        return True  # a pattern or a placeholder: tests/golden/NAME, tests/x/test_y.py
    return path.exists() or path.with_suffix(".py").exists()  # a module, as a file or a package


SOURCES = sorted({*ROOT.glob("archcalc/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/*.py"),
                  *ROOT.glob("answers/**/*"), ROOT / "conftest.py", ROOT / "pyproject.toml", ROOT / ".ci" / "run", *PAGES})


def test_every_file_the_code_and_the_pages_cite_exists():
    missing = []
    for source in SOURCES:
        if source.is_file() and "fixtures" not in source.parts:
            text = source.read_text(encoding="utf-8", errors="replace")
            missing += [f"{source.relative_to(ROOT)}: {cited}" for cited in sorted(_cited(text)) if not _exists(cited)]
    assert not missing, "\n".join(missing)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m) for m in re.findall(r"(?m)^#+ (.*)$", prose(path.read_text(encoding="utf-8")))}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_of_a_page_leads_somewhere(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        relative = linked.relative_to(ROOT).as_posix() if ROOT in linked.parents else str(linked)
        if relative in PENDING:
            continue
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_command_shown_is_a_command_run(page):
    """A transcript (`$ archcalc ...`) is a `console` block, which the tests run; `text` blocks are synopses,
    `sh` blocks installs and test commands, neither of them a command of archcalc with its output."""
    for info, body, line in blocks(page.read_text(encoding="utf-8")):
        language = info.split()[0] if info else ""
        if language in ("console", "python"):
            continue
        shown = [text for text in body.splitlines() if text.startswith("$ ") or re.match(r"archcalc \w", text)]
        if language == "text":
            shown = [text for text in shown if text.startswith("$ ")]
        assert not shown, f"{page.name}:{line}: a ```{info or ' '} block shows {shown[0]!r}: make it a ```console block"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_pages_say_nothing_about_how_the_project_is_run(page):
    text = prose(page.read_text(encoding="utf-8"))
    words = re.findall(r"(?i)\b(issues?|sessions?)\b", text) + re.findall(r"\bDESIGN\.md\b", text)
    assert not words, f"{page.name}: {sorted(set(words))}"


def _module_exists(name: str) -> bool:
    """archcalc.memory.timeline (a file or a package), archcalc.torch.build (a name in one), archcalc.grade."""
    import archcalc

    parts = name.split(".")
    for k in range(len(parts), 1, -1):
        base = ROOT.joinpath(*parts[:k])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return hasattr(archcalc, parts[1])


def test_a_module_the_pages_name_exists():
    missing = [f"{page.name}: {name}" for page in PAGES
               for name in re.findall(r"`(archcalc(?:\.\w+)+)", page.read_text(encoding="utf-8")) if not _module_exists(name)]
    assert not missing, missing
