"""Ctrl-C on `make run`: the server, its offload pool, the solve worker and its fork server all
stop quietly — no traceback, no KeyboardInterrupt, no RuntimeWarning — and the exit code is 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from service.solver.example import EXAMPLE_REQUEST
from tests.kit.server import ROOT, free_port
from tests.kit.sql import SqlAdmin
from tests.kit.waiting import eventually, until
from tests.kit.worker import READY
from tests.solving.conftest import parse_events

API = "/api/v1"


async def test_ctrl_c_on_make_run_stops_everything_without_a_traceback(
    server_env: dict[str, str], tmp_path: Path, clean_db: SqlAdmin
) -> None:
    port = free_port()
    log_path = tmp_path / "run.log"
    environment = {
        **os.environ,
        **server_env,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "METRICS_PORT": str(free_port()),
        "SOLVE_WORKERS": "1",
        # Every body through the offload pool, so its process is running when Ctrl-C comes.
        "JSON_INLINE_MAX_BYTES": "0",
    }
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        # What `make run` runs, in a process group of its own as a terminal's foreground job is.
        process = subprocess.Popen(  # noqa: ASYNC220 (Popen returns at once)
            [sys.executable, "-m", "scripts.serve"],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        async with httpx.AsyncClient(timeout=2) as probe:  # one client: each new one loads the CA bundle

            async def up() -> bool:
                if process.poll() is not None:
                    raise AssertionError(
                        f"make run exited with {process.returncode}:\n{log_path.read_text()}"
                    )
                try:
                    healthy = (await probe.get(f"{base}/health")).status_code == 200
                except httpx.HTTPError:
                    return False
                return healthy and READY in log_path.read_text(errors="replace")

            await eventually(up, timeout=90)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            minted = await http.post("/dev/token", json={"email": "ctrl-c@example.com"})
            auth = {"Authorization": f"Bearer {minted.json()['access_token']}"}
            session = (await http.post(f"{API}/sessions", json={"name": "c"}, headers=auth)).json()
            scenario = await http.post(
                f"{API}/sessions/{session['id']}/scenarios",
                json={"name": "s", "request": EXAMPLE_REQUEST},
                headers=auth,
            )
            assert scenario.status_code == 201, scenario.text
            for _ in range(2):  # the warning came once per solve
                queued = await http.post(
                    f"{API}/scenarios/{scenario.json()['id']}/solve", json={"time_limit_s": 1}, headers=auth
                )
                assert queued.status_code == 202, queued.text
                events = await http.get(f"{API}/solutions/{queued.json()['id']}/events", headers=auth)
                assert parse_events(events.text)[-1].data == {"status": "succeeded"}

        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        until(lambda: process.poll() is not None, timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log_path.read_text(errors="replace")
    assert process.returncode == 0, output
    for noise in ("Traceback", "KeyboardInterrupt", "RuntimeWarning"):
        assert noise not in output, output
