"""`make run`: database (embedded unless DATABASE_URL is set), migrations, one solve worker, then the
server of `python -m service` — everything on a fresh machine, in one command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main() -> None:
    # Imported here rather than at the top: a Ctrl-C during the imports (a second or two) ends
    # quietly below, not in a traceback.
    from pydantic import ValidationError

    from service.config import get_settings
    from service.core import metrics
    from service.core.migrations import upgrade
    from service.core.observability import configure_logging
    from service.core.server import serve
    from service.core.tracing import requested_exporters
    from service.dev.devdb import database_url

    try:
        settings = get_settings()
        requested_exporters()  # the server and the worker each install tracing themselves
    except (ValidationError, ValueError) as exc:
        sys.exit(f"Invalid configuration:\n{exc}")
    url, embedded = database_url(settings)
    print("Applying migrations…", flush=True)
    upgrade(url)
    base = f"http://{settings.host}:{settings.port}"
    where = f"embedded PostgreSQL under {settings.data_dir / 'postgres'}" if embedded else "DATABASE_URL"
    print(
        f"\nRoutebook on {base}  (database: {where})\n"
        f"  API docs:   {base}/docs\n"
        f"  Health:     {base}/health   Ready: {base}/ready\n",
        flush=True,
    )
    metrics_url = metrics.start(settings)  # before the worker starts: it inherits the directory
    if metrics_url is not None:
        print(f"  Metrics:    {metrics_url}   (the server's and the worker's)\n", flush=True)
    if "dev" in settings.auth_providers:
        print(
            f"  Playground: {base}/dev/playground/   (make demo seeds a demo user with a solved plan)\n"
            "  Dev token:  TOKEN=$(.venv/bin/python -m scripts.dev_token --email you@example.com)\n"
            f'              curl -H "Authorization: Bearer $TOKEN" {base}/api/v1/users/me\n',
            flush=True,
        )
    # One solve worker beside the server (more: `make worker`, anywhere that reaches the database).
    # With metrics on it writes into this process's directory, and this process's listener serves
    # both: the worker has no METRICS_PORT of its own (set empty, which also overrides a .env file's).
    worker_env = {**os.environ, "DATABASE_URL": url, "METRICS_PORT": ""}
    worker = subprocess.Popen([sys.executable, "-m", "service.worker"], env=worker_env)
    try:
        # The production server (python -m service), its timeouts and limits included.
        configure_logging(settings.log_level, settings.log_format or "json")
        serve(settings)
    finally:
        # SIGTERM: the worker hands running solves back to the queue and exits.
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    # 130: it had its own Ctrl-C before it was up; -SIGTERM: ours, before it was up.
    if worker.returncode not in {0, 130, -signal.SIGTERM}:
        sys.exit(f"the solve worker ended with exit code {worker.returncode}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C before the server was up (during the migrations, say): no traceback
