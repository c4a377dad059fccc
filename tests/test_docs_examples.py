"""Every command line in README.md and docs/*.md names a real command and only options it has.

The shell examples (```bash, ```sh and ```console blocks) are parsed, not run: each line is
split with shlex into shell segments (at |, &&, ||, ;, redirections), and every segment that
starts with ``colorot`` (or ``$ colorot``, ``python -m colorot``) is checked against the Typer
app itself.  The help texts' own "Examples:" are checked the same way.  CI runs the README's
fast examples for real (.ci/readme_examples.py).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer

from colorot.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(bash|sh|console|shell)\s*\n(.*?)^```", re.M | re.S)
OPERATORS = {"|", "||", "&&", ";", "&", "(", ")"}
REDIRECTIONS = {">", ">>", "<", "2>", "2>>", "&>"}
GLOBAL_OPTIONS = {"--debug", "--version", "--install-completion", "--show-completion", "--help"}
NUMBER = re.compile(r"-\d+(\.\d*)?$")


def group() -> click.Group:
    return typer.main.get_command(app)


def command_lines(text: str) -> list[str]:
    """The logical lines of the shell blocks of a Markdown text (continuations joined, '$ ' dropped)."""
    lines = []
    for _, body in SHELL_BLOCK.findall(text):
        pending = ""
        for raw in body.splitlines():
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if line.startswith("$ "):
                line = line[2:]
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def colorot_segments(line: str) -> list[list[str]]:
    """The argument lists after ``colorot`` of each shell segment of ``line`` that runs colorot."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    segments, current, skip_next = [], [], False
    for token in tokens:
        if skip_next:
            skip_next = False
            continue
        if token in OPERATORS:
            segments.append(current)
            current = []
        elif token in REDIRECTIONS or (token.endswith(">") and token.rstrip(">").isdigit()):
            skip_next = True  # the file name after a redirection
        else:
            current.append(token)
    segments.append(current)
    found = []
    for words in segments:
        if words[:1] and Path(words[0]).name == "colorot":
            found.append(words[1:])
        elif words[:3] in (["python", "-m", "colorot"], ["python3", "-m", "colorot"]):
            found.append(words[3:])
    return found


def check_arguments(args: list[str], cli: click.Group | None = None) -> list[str]:
    """Problems with one ``colorot ARGS`` line: an unknown command or an option that command lacks."""
    cli = cli or group()
    while args and args[0] in GLOBAL_OPTIONS:
        option = args.pop(0)
        if option in ("--show-completion", "--install-completion") and args and not args[0].startswith("-"):
            args.pop(0)  # the shell name
        if option in ("--version", "--help", "--show-completion", "--install-completion"):
            return []
    if not args:
        return ["no command"]
    name, *rest = args
    command = cli.commands.get(name)
    if command is None:
        return [f"unknown command {name!r}"]
    known = {"--help"}
    for param in command.params:
        known.update(getattr(param, "opts", []))
        known.update(getattr(param, "secondary_opts", []))
    problems = []
    for word in rest:
        if word == "--":
            break
        if word.startswith("-") and word != "-" and not NUMBER.match(word):
            option = word.split("=", 1)[0]
            if option not in known:
                problems.append(f"colorot {name} has no option {option}")
    return problems


def problems_in(text: str) -> list[str]:
    cli = group()
    return [f"{line!r}: {problem}" for line in command_lines(text)
            for args in colorot_segments(line) for problem in check_arguments(list(args), cli)]


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_documented_commands_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert problems_in(text) == []


def test_the_docs_hold_examples() -> None:
    """The checks above see real examples (a parser that found nothing would pass vacuously)."""
    readme = [args for line in command_lines((ROOT / "README.md").read_text(encoding="utf-8"))
              for args in colorot_segments(line)]
    commands = {args[0] for args in readme if args}
    assert {"fit", "apply", "match", "export-lut", "info", "eval"} <= commands
    everywhere = sum(len(colorot_segments(line)) for path in DOCS
                     for line in command_lines(path.read_text(encoding="utf-8")))
    assert everywhere >= 40


def test_every_option_is_in_its_command_s_section_of_the_reference() -> None:
    """docs/cli.md's section of each command (from its "## `colorot NAME" heading to the next "## ")
    names every option the command has."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    for heading in re.finditer(r"^## `colorot ([\w-]+) .*?$(.*?)(?=^## |\Z)", text, re.M | re.S):
        sections[heading.group(1)] = sections.get(heading.group(1), "") + heading.group(2)
    commands = group().commands
    assert sorted(sections) == sorted(commands)
    missing = [f"{name} {option}" for name, command in commands.items() for param in command.params
               for option in [*param.opts, *param.secondary_opts]
               if option.startswith("--") and option != "--help"
               and not re.search(re.escape(option) + r"(?![\w-])", sections[name])]
    assert missing == []


def test_help_examples_exist() -> None:
    """The examples at the end of each command's --help name real options too."""
    cli = group()
    checked = 0
    for name, command in cli.commands.items():
        for line in (command.help or "").splitlines():
            line = line.strip()
            if "colorot " in line and not line.startswith(("Full reference", "Outputs")):
                for args in colorot_segments(line[line.index("colorot "):]):
                    assert check_arguments(list(args), cli) == [], line
                    checked += 1
    assert checked >= 10


SYNTHETIC = """
Some prose.

```bash
colorot fit samples/day.jpg samples/sunset.jpg -o model.pt --force
$ colorot apply model.pt samples/ out/ --made-up-option 3
cat a.jpg | python -m colorot apply model.pt - - --format png > b.png
colorot frobnicate model.pt
colorot export-lut model.pt grade.cube \\
    --size=65 --imaginary
```

```python
colorot.fit("this is python, not checked --nonsense")
```
"""


def test_a_made_up_option_fails() -> None:
    problems = problems_in(SYNTHETIC)
    assert len(problems) == 3, problems
    assert "--made-up-option" in problems[0]
    assert "unknown command 'frobnicate'" in problems[1]
    assert "--imaginary" in problems[2] and "--size" not in problems[2].split("option")[-1]


def test_segments_and_redirections() -> None:
    line = "cat samples/day.jpg | colorot apply model.pt - - --format png > day_graded.png && colorot info model.pt"
    assert colorot_segments(line) == [["apply", "model.pt", "-", "-", "--format", "png"], ["info", "model.pt"]]
    assert colorot_segments("python -m colorot --version") == [["--version"]]
    assert check_arguments(["--show-completion", "bash"]) == []
    assert check_arguments(["fit", "a", "b", "-o", "m.pt", "--seed", "-1"]) == []
