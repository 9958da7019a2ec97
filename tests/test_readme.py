"""The README's code blocks work as copied: its handler package, its tests, its configs, its commands.

Every ```python, ```toml and ```sh block of README.md is run, unless an HTML comment right
before it says why not (``<!-- not run: ... -->``). A python block starts with the path it is
saved as (``# mypkg/tools.py``); the blocks together make the project a newcomer builds by
copying them, and the README's tests are run in it with pytest, as its reader would. A toml
block is a worker config, read with the worker's loader (``<!-- pyproject: ... -->`` marks one
that is a package's pyproject.toml instead). A sh block runs with bash in that project.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from worker.config.loading import load_config

pytestmark = [pytest.mark.no_blockbuster, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
RUN_LANGUAGES = ("python", "toml", "sh")
MAX_LINES = 350


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README, with the HTML comment right before it, if any."""

    language: str
    text: str
    line: int
    marker: str

    @property
    def path(self) -> str | None:
        """The file a block is saved as, from its first line (``# mypkg/tools.py``)."""
        match = re.fullmatch(r"# ([\w./-]+\.(?:py|toml))\s*", self.text.splitlines()[0])
        return match.group(1) if match else None

    @property
    def runs(self) -> bool:
        return self.language in RUN_LANGUAGES and not self.marker.startswith("not run:")


def read_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = re.fullmatch(r"```(\w*)\s*", lines[index])
        if opening is None:
            index += 1
            continue
        end = lines.index("```", index + 1)
        previous = lines[index - 1].strip() if index else ""
        marker = previous[4:-3].strip() if previous.startswith("<!--") else ""
        blocks.append(Block(opening.group(1), "\n".join(lines[index + 1 : end]) + "\n",
                            index + 1, marker))
        index = end + 1
    return blocks


BLOCKS = read_blocks(README.read_text(encoding="utf-8"))


def runnable(language: str) -> list[Block]:
    return [block for block in BLOCKS if block.language == language and block.runs]


def write_project(folder: Path) -> Path:
    """Save every python and toml block that names its path, as a reader copying them would."""
    for block in BLOCKS:
        if block.runs and block.path is not None and not block.marker.startswith("pyproject"):
            target = folder / block.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
    return folder


def newcomer_env() -> dict[str, str]:
    """The environment of a shell with the worker installed, and nothing of this test run's."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("TOOL_WORKER__", "PYTEST_", "OPENAI_", "COV_"))
           and name not in ("PYTHONPATH",)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_every_block_either_runs_or_says_why_not() -> None:
    """A block that does not run carries a reason; a python or toml block names its file."""
    for block in BLOCKS:
        where = f"README.md:{block.line}"
        if block.marker.startswith("not run"):
            assert block.marker.removeprefix("not run:").strip(), f"{where}: say why it is not run"
        elif block.language in ("python", "toml"):
            assert block.path or block.marker.startswith("pyproject"), (
                f"{where}: start the block with the file it is saved as (# mypkg/tools.py), "
                "or mark it <!-- not run: why -->")
        elif block.language not in ("sh", ""):
            pytest.fail(f"{where}: a ```{block.language} block: use python, toml or sh")
    for language in RUN_LANGUAGES:
        assert runnable(language), f"no ```{language} block runs"


def test_the_readme_is_a_manual_of_at_most_350_lines() -> None:
    """Long material lives in docs/; the README keeps no issue numbers or development notes."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_LINES
    assert re.search(r"\(#\d+\)|issue #?\d+", text, re.IGNORECASE) is None
    for phrase in ("not yet explained", "missed", "TODO"):
        assert phrase not in text


def test_the_readme_links_to_pages_that_exist() -> None:
    """Every relative link of the README names a file of the repository."""
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8")):
        assert (ROOT / target).exists(), target


@pytest.mark.parametrize("block", runnable("toml"), ids=lambda b: b.path or f"line{b.line}")
def test_toml_blocks_load(block: Block, tmp_path: Path) -> None:
    """A config block loads with the worker's loader; a pyproject block is valid TOML."""
    data = tomllib.loads(block.text)
    if block.marker.startswith("pyproject"):
        assert data["project"]["entry-points"]["tool_worker.tools"]
        return
    path = tmp_path / (block.path or "worker.toml")
    path.write_text(block.text, encoding="utf-8")
    settings = load_config(path, environ={"OPENAI_API_KEY": "sk-test"})
    assert settings.api.base_url


def test_the_handler_tests_pass_as_copied(tmp_path: Path) -> None:
    """The README's handler package and its tests, saved as shown, pass under plain pytest."""
    project = write_project(tmp_path)
    result = subprocess.run(  # noqa: S603 - the README's own tests, in a folder of ours
        [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=project, env=newcomer_env(), capture_output=True, text=True, timeout=150,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    tests = sum(block.text.count("\ndef test_") + block.text.count("\nasync def test_")
                for block in runnable("python"))
    assert f"{tests} passed" in output, output


@pytest.mark.parametrize("block", runnable("sh"), ids=lambda b: f"line{b.line}")
def test_shell_blocks_run(block: Block, tmp_path: Path) -> None:
    """Each shell block runs with bash in the copied project and exits 0."""
    project = write_project(tmp_path)
    result = subprocess.run(  # noqa: S603 - the README's own commands
        ["bash",  # noqa: S607 - bash from PATH, as a reader runs it
         "-euo", "pipefail", "-c", block.text], cwd=project, env=newcomer_env(),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
