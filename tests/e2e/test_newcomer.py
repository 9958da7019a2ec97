"""A newcomer's first hour, replayed: a fresh install, a handler package, its tools, a run answered.

The worker is installed from a wheel of this checkout into a fresh venv, whose dependencies come
from this test run's site-packages (a ``.pth`` line), so nothing is downloaded. The handler
package lives in a temporary project folder, and every command runs there with the fresh
venv's ``tool-worker``, the way a user runs it in their project: ``tools list``, ``tools sync``
onto an assistant, ``check-config``, then ``run --once`` against ``tool-worker simulate``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.e2e, pytest.mark.no_blockbuster, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SIM_KEY = "sk-sim"
HANDLER = '''\
from pathlib import Path

from worker import tool


@tool
def greet(name: str) -> str:
    """Greet someone by name.

    Args:
        name: Who to greet, like 'Ada'.
    """
    with Path("greeted.txt").open("a", encoding="utf-8") as greeted:  # proof that it ran here
        greeted.write(f"{name}\\n")
    return f"hello {name}"
'''


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        ok: bool = True) -> subprocess.CompletedProcess[str]:
    """A command to its end; with ``ok``, a failure shows its output."""
    done = subprocess.run(  # noqa: S603 - our own programs, fixed arguments
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=180, check=False,
    )
    if ok:
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done


def _build_offline() -> list[str]:
    """Build with this venv's setuptools when it is new enough ([dev] has it), else isolated.

    A venv made before [dev] named setuptools>=77 builds in isolation, which fetches setuptools.
    """
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        major = 0
    return ["--no-build-isolation", "--no-index"] if major >= 77 else []


@pytest.fixture(scope="module")
def fresh_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh venv with the worker installed from a wheel of this checkout."""
    root = tmp_path_factory.mktemp("newcomer-install")
    source = root / "source"  # a copy: building in the checkout would leave build/ behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("worker", "tools"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *_build_offline(),
        "--wheel-dir", root / "wheels", source)
    (wheel,) = (root / "wheels").glob("tool_worker-*.whl")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .stdout.strip())
    # The dependencies, after the fresh site-packages: a path line adds a folder, and the .pth
    # files in it (this checkout's editable install) are not read, so `worker` is the wheel's.
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
        "--no-index", wheel)
    return venv / "bin"


@dataclass
class Project:
    """A user's project folder with a handler package, and the simulator it talks to."""

    folder: Path
    bin: Path
    base_url: str

    def env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("TOOL_WORKER__", "OPENAI_", "PYTEST_"))
               and name != "PYTHONPATH"}
        return {**env, "OPENAI_API_KEY": SIM_KEY, "PATH": f"{self.bin}{os.pathsep}{env['PATH']}"}

    def tool_worker(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.bin / "tool-worker", *args, cwd=self.folder, env=self.env(), ok=ok)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The simulator's answer; paths under /_sim/ are at its root, not under /v1."""
        base = self.base_url.removesuffix("/v1") if path.startswith("/_sim/") else self.base_url
        request = urllib.request.Request(  # noqa: S310 - the simulator on loopback
            f"{base}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {SIM_KEY}", "OpenAI-Beta": "assistants=v2",
                     "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read())

    def write_config(self, threads: list[str]) -> None:
        (self.folder / "worker.toml").write_text(
            f'[api]\nbase_url = "{self.base_url}"\n\n'
            f"[watch]\nthreads = {json.dumps(threads)}\n\n"
            '[tools]\nmodules = ["mypkg.tools"]\n\n'
            "[server]\nport = 0\n", encoding="utf-8")


def wait_for_line(path: Path, pattern: str, timeout_s: float = 30) -> re.Match[str]:
    """The first line of a growing log file that matches ``pattern``, within the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text(encoding="utf-8", errors="replace"))
        if found:
            return found
        time.sleep(0.05)  # a child process's file: nothing to wait on but the file itself
    pytest.fail(f"no line matching {pattern!r} in {path.name}: {path.read_text()[-2000:]}")


@pytest.fixture
def project(fresh_bin: Path, tmp_path: Path) -> Iterator[Project]:
    """A handler package in a project folder, and `tool-worker simulate` on a free port."""
    folder = tmp_path / "project"
    (folder / "mypkg").mkdir(parents=True)
    (folder / "mypkg" / "__init__.py").write_text("")
    (folder / "mypkg" / "tools.py").write_text(HANDLER)
    log = tmp_path / "simulate.log"
    with log.open("w") as output:
        simulator = subprocess.Popen(  # noqa: S603 - the fresh venv's own console script
            [str(fresh_bin / "tool-worker"), "simulate", "--port", "0", "--api-key", SIM_KEY],
            stdout=output, stderr=subprocess.STDOUT, cwd=folder)
    try:
        found = wait_for_line(log, r"listening on (http://\S+)")
        yield Project(folder, fresh_bin, found.group(1))
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


def test_the_fresh_install_is_the_wheel_not_this_checkout(project: Project) -> None:
    """`worker` and the ready-made tools import from the fresh venv's site-packages."""
    found = run(project.bin / "python", "-c",
                "import worker, tool_worker_tools; print(worker.__file__, tool_worker_tools.__file__)",
                cwd=project.folder, env=project.env()).stdout.split()
    assert all(str(project.bin.parent) in path for path in found), found
    assert all(str(ROOT) not in path for path in found), found


def test_a_newcomers_handler_package_answers_a_run(project: Project) -> None:
    """tools list, tools sync, check-config and run --once, from the project folder."""
    assistant = project.api("POST", "/assistants", {"model": "gpt-4o", "name": "newcomer"})
    thread = project.api("POST", "/threads", {})["id"]
    project.write_config([thread])

    listed = project.tool_worker("tools", "list", "--config", "worker.toml").stdout
    assert listed.startswith("greet  Greet someone by name.")
    synced = project.tool_worker("tools", "sync", "--assistant", assistant["id"],
                                 "--config", "worker.toml").stdout
    assert f"updated {assistant['id']}" in synced
    tools = project.api("GET", f"/assistants/{assistant['id']}")["tools"]
    assert [t["function"]["name"] for t in tools] == ["greet"]
    checked = project.tool_worker("check-config", "--config", "worker.toml").stdout
    assert "configuration OK" in checked
    assert "tools:   greet" in checked

    script = [[{"name": "greet", "arguments": json.dumps({"name": "Ada"})}]]
    created = project.api("POST", f"/threads/{thread}/runs", {
        "assistant_id": assistant["id"], "metadata": {"sim_rounds": json.dumps(script)}})
    project.tool_worker("run", "--config", "worker.toml", "--once")
    assert project.api("GET", f"/threads/{thread}/runs/{created['id']}")["status"] == "completed"
    assert (project.folder / "greeted.txt").read_text() == "Ada\n"


def test_an_unscripted_run_calls_the_assistants_tools_and_shows_the_outputs(
    project: Project,
) -> None:
    """With no script, the simulator's model calls each of the assistant's tools once; the
    outputs it took are listed by GET /_sim/runs/{id}/outputs and in the run's last message."""
    thread = project.api("POST", "/threads", {})["id"]
    project.write_config([thread])
    schema = json.loads(project.tool_worker("tools", "schema", "--config", "worker.toml").stdout)
    assistant = project.api("POST", "/assistants", {"model": "gpt-4o", "tools": schema})
    created = project.api("POST", f"/threads/{thread}/runs", {"assistant_id": assistant["id"]})
    project.tool_worker("run", "--config", "worker.toml", "--once")
    assert project.api("GET", f"/threads/{thread}/runs/{created['id']}")["status"] == "completed"
    (name,) = (project.folder / "greeted.txt").read_text().splitlines()
    taken = project.api("GET", f"/_sim/runs/{created['id']}/outputs")["outputs"]
    assert [(o["round"], o["tool"], o["output"]) for o in taken] == [(1, "greet", f"hello {name}")]
    messages = project.api("GET", f"/threads/{thread}/messages")["data"]
    assert any(f"greet -> hello {name}" in json.dumps(m["content"]) for m in messages)
