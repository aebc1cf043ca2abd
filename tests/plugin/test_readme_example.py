"""The README's pytest example works as the README shows it: its python block, saved under
the name the README gives in an empty directory, run with the README's command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def readme_example() -> tuple[str, str, list[str]]:
    """The file name, the python block and the pytest command of the pytest plugin section."""
    section = _section(README.read_text(), "The pytest plugin")
    (name,) = re.findall(r"Save this as `([\w.]+\.py)`", section)
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    commands = [line for block in re.findall(r"```bash\n(.*?)```", section, re.S)
                for line in block.splitlines() if line.startswith("pytest ")]
    return name, code, shlex.split(commands[0])


def test_the_readme_names_a_file_an_example_and_a_command() -> None:
    name, code, command = readme_example()
    assert name.startswith("test_") and "conform.assert_conforms" in code
    assert command[0] == "pytest" and "--conform-transform" in command


@pytest.mark.slow
def test_the_readme_example_passes_as_shown(pytester: pytest.Pytester) -> None:
    name, code, command = readme_example()
    assert not any(pytester.path.iterdir())
    (pytester.path / name).write_text(code)
    result = pytester.runpytest_subprocess(*command[1:])
    result.assert_outcomes(passed=1)
    assert "DeadlineExceeded" not in result.stdout.str()
