"""A newcomer's first run, as the README tells it: in a fresh clone `make run` installs the runtime only and serves;
its banner comes once the server answers and names what the next commands need (addresses, tokens, chat ids); a
port in use is one line; and every command of the README's "Quick start" and "Command line" runs as written.

The fresh clone is a copy of the files `git ls-files` lists (tracked and untracked, taken from the working tree),
installed with pip's cache (PIP_CACHE_DIR, else pip's default ~/.cache/pip) so that only the first run on a
machine downloads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, STARTUP_TIMEOUT, free_port

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
USER_LINE = re.compile(rf"^\s+(\S+@\S+)\s+id\s+({UUID})\s*$")
CHAT_LINE = re.compile(rf"^\s+(\S.*?)\s+id\s+({UUID})\s*$")
JWT_LINE = re.compile(r"^\s+(eyJ[\w-]+\.[\w-]+\.[\w-]+)\s*$")
# The banner's last words: everything above it has been printed.
BANNER_END = "Ctrl-C stops the server"
DEMO_CHATS = {"alice & bob", "Trail crew"}
# Packages `make test` and `make bench` need and `make run` must not install.
DEV_ONLY = ("playwright", "matplotlib", "numpy", "pytest")
# Settings a newcomer's shell does not have (each run here sets what it needs), and make's own variables (this file
# may run under `make test`).
NOT_IN_A_FRESH_SHELL = (
    "SECRET_KEY",
    "DATABASE_URL",
    "BROADCAST_URL",
    "PORT",
    "HOST",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "METRICS_TOKEN",
    "VIRTUAL_ENV",
    "MAKEFLAGS",
    "MAKELEVEL",
    "MFLAGS",
)
# A first `make run` installs for about a minute here (pip resolves and downloads every runtime package).
FIRST_RUN_TIMEOUT = 240.0
COMMAND_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass
class Banner:
    """What `serve --demo` printed: each demo user's id and token, each demo chat's id."""

    users: dict[str, str] = field(default_factory=dict)  # email -> id
    tokens: dict[str, str] = field(default_factory=dict)  # email -> token
    chats: dict[str, str] = field(default_factory=dict)  # name -> id


def parse_banner(output: str) -> Banner:
    banner = Banner()
    email: str | None = None
    in_chats = False
    for line in output.splitlines():
        in_chats = in_chats or "demo chats" in line
        if (m := USER_LINE.match(line)) is not None and not in_chats:
            email = m.group(1)
            banner.users[email] = m.group(2)
        elif (m := JWT_LINE.match(line)) is not None and email is not None:
            banner.tokens[email] = m.group(1)
            email = None
        elif (m := CHAT_LINE.match(line)) is not None and in_chats:
            banner.chats[m.group(1)] = m.group(2)
    return banner


def fresh_shell(**settings: str) -> dict[str, str]:
    """This process's environment as a newcomer's shell has it: no server settings, no virtualenv on PATH (a
    README command must name .venv/bin itself), pip's cache kept between runs."""
    env = {name: value for name, value in os.environ.items() if name not in NOT_IN_A_FRESH_SHELL}
    path = env.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(p for p in path if not (Path(p).parent / "pyvenv.cfg").exists())
    env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
    return {**env, **settings}


def answers(url: str) -> bool:
    """The server at `url` answers HTTP now (a connection waiting to be accepted is not an answer)."""
    try:
        return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


class Running:
    """A command that serves, in a process group of its own (Ctrl-C reaches all of it), its stdout and stderr in
    one file."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, condition: Callable[[str], bool], what: str, timeout: float) -> str:
        """The output once `condition(output)` holds; fails if the process ends or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while not condition(output := self.output()):
            assert self.proc.poll() is None, f"exited with {self.proc.returncode} before {what}:\n{output}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:g}s:\n{output}"
            time.sleep(0.05)
        return output

    def interrupt(self) -> None:
        """Ctrl-C, as in a terminal: SIGINT to the whole process group, which must end within STOP_TIMEOUT."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.interrupt()


def warnings_said_twice(output: str) -> list[str]:
    """Warnings whose message appears more than once in `output` (also unformatted, as Python prints a warning
    logged before logging is configured). A text record is `time WARNING logger message`."""
    messages = {line.split(" WARNING ", 1)[1].split(" ", 1)[-1] for line in output.splitlines() if " WARNING " in line}
    return sorted(message for message in messages if output.count(message) > 1)


def test_demo_banner_comes_once_the_server_answers_with_chat_ids_and_each_warning_once(tmp_path: Path) -> None:
    """`serve --demo` on a bus that is down: the seeding and the server's start each wait for it (~3 s), so a
    banner printed before the server answers is seen here; the bus and SECRET_KEY warnings are said once."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = fresh_shell(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}", BROADCAST_URL=f"redis://127.0.0.1:{free_port()}"
    )
    argv = [sys.executable, "cli.py", "serve", "--demo", "--port", str(port)]
    with Running(argv, cwd=ROOT, env=env, log=tmp_path / "output.log") as server:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            printed = server.output()
            if answers(url):
                break
            assert BANNER_END not in printed, f"the banner came before the server answered:\n{printed}"
            assert server.proc.poll() is None and time.monotonic() < deadline, f"did not serve:\n{printed}"
            time.sleep(0.05)
        output = server.wait_for(lambda out: BANNER_END in out, "banner", STARTUP_TIMEOUT)
        banner = parse_banner(output)
        alice = banner.tokens["alice@tailtrail.dev"]
        response = httpx.post(
            f"{url}/graphql",
            json={"query": "{ myChats { id name } }"},
            headers={"Authorization": f"Bearer {alice}"},
            timeout=10,
        )
    served = {chat["name"] or "alice & bob": chat["id"] for chat in response.json()["data"]["myChats"]}
    assert banner.chats == served and set(served) == DEMO_CHATS, output
    for where in (
        f"{url}/",
        f"{url}/graphql",
        f"ws://127.0.0.1:{port}/graphql",
        f"ws://127.0.0.1:{port}/websocket/ws/",
    ):
        assert where in output, where
    assert "SECRET_KEY is not set" in output and "unreachable" in output, output
    assert warnings_said_twice(output) == [], output


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_in_use_is_one_line_naming_it_and_a_failure(tmp_path: Path, workers: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # --workers 2 needs a shared bus; nothing connects to it before the port is bound.
        env = fresh_shell(
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}", BROADCAST_URL="redis://127.0.0.1:6379"
        )
        argv = [sys.executable, "cli.py", "serve", "--demo", "--port", str(port), "--workers", str(workers)]
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert done.returncode != 0, done
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == "", "nothing (no banner, no token) is printed for a server that cannot start"
    [line] = done.stderr.splitlines()
    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert f"make run PORT={port + 1}" in line and f"--port {port + 1}" in line


@dataclass
class FirstRun:
    """`make run PORT=…` in a fresh copy of the repository, serving."""

    clone: Path
    port: int
    output: str
    env: dict[str, str]
    venv_megabytes: float
    install_seconds: float  # from `make run` to the end of its pip install
    serving_seconds: float  # from `make run` to its banner


def fresh_clone(target: Path) -> Path:
    """The files a clone of this checkout would have, as they are in the working tree (uncommitted work too)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=COMMAND_TIMEOUT,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def megabytes(path: Path) -> float:
    du = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True, timeout=COMMAND_TIMEOUT)
    return int(du.stdout.split()[0]) / 1024


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    clone = fresh_clone(tmp_path_factory.mktemp("clone"))
    port = free_port()
    env = fresh_shell()
    log = tmp_path_factory.mktemp("first-run") / "make-run.log"
    started = time.time()
    with Running(["make", "run", f"PORT={port}"], cwd=clone, env=env, log=log) as run:
        output = run.wait_for(lambda out: BANNER_END in out, "banner", FIRST_RUN_TIMEOUT)
        yield FirstRun(
            clone=clone,
            port=port,
            output=output,
            env=env,
            venv_megabytes=megabytes(clone / ".venv"),
            install_seconds=(clone / ".venv" / ".installed-runtime").stat().st_mtime - started,
            serving_seconds=time.time() - started,
        )
        run.interrupt()
    assert not answers(f"http://127.0.0.1:{port}"), "Ctrl-C stops the server"


@pytest.mark.timeout(FIRST_RUN_TIMEOUT + 60)
def test_make_run_in_a_fresh_clone_installs_the_runtime_only_and_serves_on_port(
    first_run: FirstRun, capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print(
            f"\nfirst `make run`: .venv {first_run.venv_megabytes:.0f} MB; pip install done after "
            f"{first_run.install_seconds:.1f} s, serving after {first_run.serving_seconds:.1f} s"
        )
    assert answers(f"http://127.0.0.1:{first_run.port}")
    assert f"serving on http://127.0.0.1:{first_run.port}" in first_run.output
    assert set(parse_banner(first_run.output).chats) == DEMO_CHATS, first_run.output
    pip = subprocess.run(
        [".venv/bin/pip", "list", "--format=json"],
        cwd=first_run.clone,
        capture_output=True,
        text=True,
        check=True,
        timeout=COMMAND_TIMEOUT,
    )
    installed = {package["name"].lower() for package in json.loads(pip.stdout)}
    assert {"uvicorn", "strawberry-graphql", "httpx", "typer"} <= installed
    assert [name for name in DEV_ONLY if name in installed] == []


# README placeholders and what fills them: from the banner of the server the commands run against.
PLACEHOLDERS: dict[str, Callable[[Banner], str]] = {
    "chat_id": lambda banner: banner.chats["Trail crew"],
    "user_id": lambda banner: banner.users["alice@tailtrail.dev"],
    "token": lambda banner: banner.tokens["alice@tailtrail.dev"],
}
PLACEHOLDER = re.compile(r"<([a-z_]+)>")
README_SECTIONS = ("Quick start", "Command line")
# `make run` is the server these commands run against; `make test` is this suite.
NOT_RUN_HERE = ("make run", "make test")


def readme_commands(readme: str) -> list[str]:
    """Each non-empty, non-comment line of the ```sh blocks under the README's sections README_SECTIONS."""
    commands: list[str] = []
    section, fence = "", None  # fence: the info string of the code block the line is in (None: not in one)
    for line in readme.splitlines():
        text = line.strip()
        if text.startswith("```"):
            fence = text[3:].strip() if fence is None else None
        elif fence is None and line.startswith("## "):
            section = line[3:].strip()
        elif fence == "sh" and section in README_SECTIONS and text and not text.startswith("#"):
            commands.append(text)
    return commands


def filled(command: str, banner: Banner) -> str:
    unknown = sorted(set(PLACEHOLDER.findall(command)) - set(PLACEHOLDERS))
    assert unknown == [], f"README placeholder(s) {unknown} in {command!r}: add them to PLACEHOLDERS"
    return PLACEHOLDER.sub(lambda m: PLACEHOLDERS[m.group(1)](banner), command)


@pytest.mark.timeout(FIRST_RUN_TIMEOUT + 120)
def test_every_readme_command_runs_as_written_against_make_run(first_run: FirstRun) -> None:
    commands = readme_commands((first_run.clone / "README.md").read_text())
    to_run = [c for c in commands if not c.startswith(NOT_RUN_HERE)]
    assert to_run, f"no ```sh commands under the README's {' and '.join(README_SECTIONS)} sections"
    banner = parse_banner(first_run.output)
    env = {**first_run.env, "PORT": str(first_run.port)}  # as the README says: export the PORT make run got
    failures = []
    for command in to_run:
        done = subprocess.run(
            ["sh", "-c", filled(command, banner)],
            cwd=first_run.clone,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        if done.returncode != 0:
            failures.append(f"$ {command}\nexit {done.returncode}\n{done.stdout}{done.stderr}")
    assert failures == [], "\n\n".join(failures)
