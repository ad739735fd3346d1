"""The drills' load client sends a GET again, once, when the server closed its kept-alive connection unanswered."""

import asyncio
import contextlib

import httpx
import pytest

from bench.chaos import Load

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@contextlib.asynccontextmanager
async def server(answer_on_connection):
    """A raw HTTP/1.1 server: `answer_on_connection(connection, request)` says whether to answer or close."""
    requests: list[tuple[int, int]] = []
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        connection, request = connections, 0
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                request += 1
                requests.append((connection, request))
                if not answer_on_connection(connection, request):
                    writer.close()  # read, never answered: what a server closing idle connections looks like
                    return
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client, requests
    finally:
        listener.close()
        await listener.wait_closed()


async def test_a_kept_alive_connection_closed_unanswered_is_tried_again_on_a_new_one():
    # The first connection answers its first request and drops its second.
    async with server(lambda connection, request: not (connection == 1 and request == 2)) as (client, requests):
        first, retried_first = await Load._get(client, "/a")
        second, retried_second = await Load._get(client, "/b")
    assert (first.status_code, retried_first) == (200, False)
    assert (second.status_code, retried_second) == (200, True)
    assert requests == [(1, 1), (1, 2), (2, 1)]  # the second try went out on a connection of its own


async def test_it_is_tried_again_once_only():
    async with server(lambda connection, request: False) as (client, requests):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await Load._get(client, "/a")
    assert requests == [(1, 1), (2, 1)]
