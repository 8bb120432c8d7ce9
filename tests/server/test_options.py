"""The server's settings: bounded defaults, values from the environment, nonsense refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.config import Settings
from service.core.server import BoundedHttpProtocol, server_options


def test_every_wait_and_count_is_bounded_by_default_and_proxies_are_not_believed() -> None:
    options = server_options(Settings(_env_file=None))  # type: ignore[call-arg]
    assert options["http"] is BoundedHttpProtocol
    assert options["workers"] == 1
    assert options["timeout_keep_alive"] == 5
    assert options["timeout_graceful_shutdown"] == 10
    assert options["limit_concurrency"] == 500
    assert options["backlog"] == 2048
    assert options["proxy_headers"] is False
    assert options["forwarded_allow_ips"] == ["127.0.0.1"]
    assert options["access_log"] is False and options["log_config"] is None  # ours, not uvicorn's


def test_the_environment_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "WEB_CONCURRENCY": "3",
        "TIMEOUT_KEEP_ALIVE": "75",
        "TIMEOUT_GRACEFUL_SHUTDOWN": "25",
        "LIMIT_CONCURRENCY": "64",
        "BACKLOG": "128",
        "PROXY_HEADERS": "true",
        "FORWARDED_ALLOW_IPS": "10.0.0.1, 10.0.0.0/8",
        "HOST": "192.0.2.10",
        "PORT": "9000",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    options = server_options(settings)
    assert (options["host"], options["port"], options["workers"]) == ("192.0.2.10", 9000, 3)
    assert (options["timeout_keep_alive"], options["timeout_graceful_shutdown"]) == (75, 25)
    assert (options["limit_concurrency"], options["backlog"]) == (64, 128)
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["10.0.0.1", "10.0.0.0/8"]
    assert server_options(settings, workers=2)["workers"] == 2  # python -m service --workers 2


@pytest.mark.parametrize(
    "name",
    ["web_concurrency", "timeout_keep_alive", "timeout_request_headers", "timeout_graceful_shutdown",
     "limit_concurrency", "backlog", "json_parse_workers", "json_large_writes", "json_large_transfers"],
)  # fmt: skip
def test_zero_is_refused_naming_the_variable(name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings(_env_file=None, **{name: 0})  # type: ignore[arg-type]
