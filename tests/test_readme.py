"""Every command the README shows runs as written: its paths exist, and each CLI line parses with the real
parser (the cheap form of running it; the demo and sync paths run for real in test_cli.py)."""

import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def _bash_lines():
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)  # continuation lines
        for line in joined.splitlines():
            line = line.split(" # ")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _cli_commands():
    """The argument strings of every `python -m omnisync_core ...` in the README's bash blocks."""
    prefix = "python -m omnisync_core "
    return [part.strip()[len(prefix):] for line in _bash_lines() for part in line.split("&&")
            if part.strip().startswith(prefix)]


def _strip_optional_brackets(text):
    """The CLI synopsis shows optional flags as [--flag value | --other]: keep the first alternative."""
    text = re.sub(r"\[([^\[\]]*?)\]", lambda m: m.group(1).split("|")[0].split(" instead of")[0], text)
    return shlex.split(text)


def test_readme_shows_the_two_commands():
    setup = [line for line in _bash_lines() if line.startswith("python3 -m venv .venv")]
    assert len(setup) == 2
    assert setup[0].endswith("python -m omnisync_core demo -o out.mp4")
    assert setup[1].endswith("python -m pytest -q tests")


@pytest.mark.parametrize("line", _cli_commands(), ids=lambda a: a[:60])
def test_readme_cli_lines_parse(line):
    from omnisync_core.cli import build_parser

    args = build_parser().parse_args(_strip_optional_brackets(line))
    assert args.command == line.split()[0]
    for name in ("config", "model"):
        value = getattr(args, name, None)
        if value and not os.path.isabs(value) and value.startswith(("configs/", "models/")):
            assert os.path.exists(os.path.join(ROOT, value)), f"README names {value}, which the repo lacks"


def test_readme_files_exist():
    for path in set(re.findall(r"`((?:configs|models|samples|workflows|docs)/[\w./-]+\.(?:json|safetensors|mp4|wav|md|png))`",
                               README)):
        assert os.path.exists(os.path.join(ROOT, path)), path


def test_the_readme_test_command_installs_every_optional_extra_ci_installs():
    """CI installs every extra of pyproject.toml (but dev, which requirements-dev.txt mirrors); the README's test
    command must install the same, or a reader's run skips what CI runs."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        command = next(ln for ln in f if "python -m pytest -q tests" in ln and "pip install" in ln)
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    for name, specs in extras.items():
        if name == "dev":
            continue
        assert f"extras {name}" in ci, name
        for spec in specs:
            assert f'"{spec}"' in command, spec
