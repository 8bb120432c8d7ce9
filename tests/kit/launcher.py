"""`python -m MODULE` for the tests, forked from a warm parent instead of a new interpreter.

A server or a worker the tests start imports for a second or more before it does anything, and the
suite starts about fifty. One warm parent per test process (tests/kit/warm.py) has imported those
modules once and forks each of them: a real process of its own, with its own pid,
environment, working directory and log file (stdout and stderr), that signals reach and that ends
with an exit code like any other. `LaunchedProcess` offers the part of `subprocess.Popen` the tests
use; its exit code comes from the warm parent, whose child it is. What acts only as an interpreter
starts (PYTHONPATH, -X options) is the warm parent's: the tests set none of it for these commands.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
_WARM = Path(__file__).with_name("warm.py")


class WarmParent:
    """The warm parent of this test process, started on first use; its messages read on demand."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, str(_WARM), str(theirs.fileno())],
            cwd=ROOT,
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        theirs.close()
        self._conn = ours
        self._buffer = b""
        self._exits: dict[int, int] = {}
        self._lock = threading.Lock()
        self._read_until(lambda message: bool(message.get("ready")))

    def _read_until(self, done: Any) -> dict[str, Any]:
        """Messages until one satisfies `done`; the exit codes met on the way are kept."""
        while True:
            while b"\n" not in self._buffer:
                chunk = self._conn.recv(65536)
                if not chunk:
                    raise AssertionError(f"the warm parent ended ({self._process.wait()})")
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\n", 1)
            message: dict[str, Any] = orjson.loads(line)
            if "exit" in message:
                self._exits[message["exit"]] = message["code"]
            if done(message):
                return message

    def launch(self, module: str, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> int:
        request = {
            "module": module,
            "args": list(args),
            "env": dict(env),
            "cwd": str(ROOT),
            "log": str(log_path),
        }
        with self._lock:
            self._conn.sendall(orjson.dumps(request) + b"\n")
            pid: int = self._read_until(lambda message: "pid" in message)["pid"]
        return pid

    def exit_code(self, pid: int) -> int:
        """The exit code of a child known to have ended (the parent reports it at once)."""
        with self._lock:
            if pid not in self._exits:
                self._read_until(lambda message: message.get("exit") == pid)
            return self._exits.pop(pid)

    def close(self) -> None:
        self._conn.close()
        self._process.wait(30)


_parent: WarmParent | None = None


def warm_parent() -> WarmParent:
    global _parent
    if _parent is None or _parent._process.poll() is not None:
        _parent = WarmParent()
        # Ended with this process, and waited for: its children's CPU time counts in this one's.
        atexit.register(_parent.close)
    return _parent


class LaunchedProcess:
    """A child of the warm parent, as much of `subprocess.Popen` as the tests use."""

    def __init__(self, parent: WarmParent, pid: int) -> None:
        self._parent = parent
        self.pid = pid
        self._pidfd = os.pidfd_open(pid)
        self.returncode: int | None = None

    def _ended(self, timeout: float | None) -> bool:
        return bool(select.select([self._pidfd], [], [], timeout)[0])

    def _collect(self) -> int:
        self.returncode = self._parent.exit_code(self.pid)
        os.close(self._pidfd)
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None and self._ended(0):
            self._collect()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        if not self._ended(timeout):
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
        return self._collect()

    async def wait_async(self) -> int:
        """wait(), without blocking the event loop."""
        if self.returncode is None:
            loop = asyncio.get_running_loop()
            ended: asyncio.Future[None] = loop.create_future()

            def on_end() -> None:
                if not ended.done():
                    ended.set_result(None)

            loop.add_reader(self._pidfd, on_end)
            try:
                await ended
            finally:
                loop.remove_reader(self._pidfd)
        return self.wait(0)

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def launch(module: str, env: Mapping[str, str], log_path: Path, args: Sequence[str] = ()) -> LaunchedProcess:
    """`python -m MODULE ARGS` in ROOT with exactly `env`, stdout and stderr to `log_path`."""
    log_path.write_bytes(b"")  # there, empty, before the call returns, as with Popen
    parent = warm_parent()
    return LaunchedProcess(parent, parent.launch(module, args, env, log_path))
