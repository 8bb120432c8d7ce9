"""The warm parent behind tests/kit/launcher.py: a process that has imported what `python -m service`,
`python -m service.worker` and `uvicorn service.main:app` import, and forks one of them on request.

Run as a script (`python tests/kit/warm.py FD`, so that nothing of tests/ is imported) with one end
of a socket pair as FD. The service's modules read neither settings nor the environment when they
are imported (get_settings() is called at start-up, in the child, from the child's environment), so
they are imported here once. Then it answers requests, one JSON line each, `{"module", "args",
"env", "cwd", "log"}`, with `{"pid"}` once the child runs, and says `{"exit", "code"}` when a child
has ended (its code as subprocess reports it: negative for a signal). It forks only from here, with
one thread and no event loop; it ends when the socket closes.
"""

from __future__ import annotations

import os
import runpy
import select
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
# What the launched commands import; the solver's fork server imports PyVRP in its own process.
_WARM_MODULES = ("service.main", "service.__main__", "service.solving.worker", "service.outbound.dispatcher")


def _warm_up() -> None:
    import importlib

    for name in _WARM_MODULES:
        importlib.import_module(name)


def _child(request: dict[str, Any], conn: socket.socket, pidfds: list[int]) -> None:
    """In the forked child: become `python -m MODULE ARGS` with the request's environment and log."""
    conn.close()
    for fd in pidfds:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    log = os.open(request["log"], os.O_WRONLY)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    # As a new interpreter starts: Ctrl-C raises KeyboardInterrupt (this parent ignores it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if request["env"].get("PYTHONUNBUFFERED"):
        sys.stdout.reconfigure(write_through=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(write_through=True)  # type: ignore[union-attr]
    sys.argv = [request["module"], *request["args"]]
    sys.path[0] = request["cwd"]


def _serve(conn: socket.socket) -> dict[str, Any] | None:
    """Fork a child per request and report how each one ends; in a child, return its request."""
    children: dict[int, int] = {}  # pidfd -> pid
    buffer = b""
    while True:
        readable, _, _ = select.select([conn.fileno(), *children], [], [])
        for fd in readable:
            if fd == conn.fileno():
                chunk = conn.recv(65536)
                if not chunk:
                    return None
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = orjson.loads(line)
                    assert threading.active_count() == 1, "a thread in the warm parent: forking is unsafe"
                    sys.stdout.flush()
                    sys.stderr.flush()
                    pid = os.fork()
                    if pid == 0:
                        _child(request, conn, list(children))
                        return dict(request)
                    children[os.pidfd_open(pid)] = pid
                    conn.sendall(orjson.dumps({"pid": pid}) + b"\n")
            else:
                pid = children.pop(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                conn.sendall(orjson.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}) + b"\n")


def main() -> None:
    conn = socket.socket(fileno=int(sys.argv[1]))
    # A Ctrl-C reaches the whole process group: the test process decides, and closes the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.path[0] = str(ROOT)
    _warm_up()
    conn.sendall(b'{"ready": true}\n')
    request = _serve(conn)
    if request is None:
        return
    # The child: what `python -m MODULE` would run; its end is the interpreter's own (exit code,
    # traceback, atexit handlers, non-daemon threads joined).
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
