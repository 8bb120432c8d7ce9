"""bench_loop's load generator (scripts/loadgen.py) reads a response's status and length only and
counts the body's bytes as they come: a response is complete exactly when its last byte has come,
however the bytes were cut into reads, and a connection that drops is status 0."""

from __future__ import annotations

import itertools

import pytest

from scripts.loadgen import _Exchange

BODY = b"x" * 1000
RESPONSE = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\nContent-Length: 1000\r\n\r\n" + BODY


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False


def _exchange() -> tuple[_Exchange, _Transport]:
    exchange, transport = _Exchange(b"POST / HTTP/1.1\r\n\r\n"), _Transport()
    exchange.connection_made(transport)  # type: ignore[arg-type]
    return exchange, transport


@pytest.mark.parametrize("cuts", [[], [10], [len(RESPONSE) - 1000], [40, 80, 95, 500], list(range(1, 200))])
async def test_a_response_is_complete_at_its_last_byte_however_it_was_cut(cuts: list[int]) -> None:
    exchange, transport = _exchange()
    bounds = [0, *cuts, len(RESPONSE)]
    for _ in range(2):  # the same connection, request after request
        done = exchange.send()
        pieces = [RESPONSE[a:b] for a, b in itertools.pairwise(bounds) if b > a]
        for piece in pieces[:-1]:
            exchange.data_received(piece)
            assert not done.done()
        exchange.data_received(pieces[-1])
        assert done.done() and done.result() == 201
    assert transport.written == [b"POST / HTTP/1.1\r\n\r\n"] * 2


async def test_a_dropped_connection_is_status_0() -> None:
    exchange, _ = _exchange()
    done = exchange.send()
    exchange.data_received(RESPONSE[:50])
    exchange.connection_lost(None)
    assert done.done() and done.result() == 0
