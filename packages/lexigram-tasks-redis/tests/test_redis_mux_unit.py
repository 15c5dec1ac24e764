"""Unit tests of the multiplexed connection's wire format (no server needed)."""

from __future__ import annotations

import asyncio
import gc
import ssl

import pytest

from lexigram.tasks.backends.redis._mux import MuxClient, RespParser, error_for, pack
from redis import exceptions as rexc


def test_pack_encodes_every_argument_type() -> None:
    assert pack(("SET", b"k", 12, 1.5, "é")) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$3\r\n1.5\r\n$2\r\n\xc3\xa9\r\n"
    )
    with pytest.raises(rexc.DataError):
        pack(("SET", object()))
    with pytest.raises(rexc.DataError):
        pack(("SET", True))


def test_hiredis_and_the_python_encoder_write_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lexigram.tasks.backends.redis import _mux

    args = ("EVALSHA", "f" * 40, 2, "{q}:a", "{q}:b", b"\x00raw", 3_600_000, 0.1, 1e20, -2.5, "é")
    with_hiredis = pack(args)
    monkeypatch.setattr(_mux, "_hiredis_pack", None)
    assert pack(list(args)) == with_hiredis
    assert pack(args) == b"*%d\r\n" % len(args) + _mux.pack_args(args)


def test_parser_reads_every_reply_type() -> None:
    parser = RespParser()
    parser.feed(b"+OK\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*3\r\n:1\r\n*1\r\n$1\r\nx\r\n$0\r\n\r\n")
    assert parser.gets() == b"OK"
    assert parser.gets() == 42
    assert parser.gets() == b"abc"
    assert parser.gets() is None
    assert parser.gets() is None
    assert parser.gets() == [1, [b"x"], b""]
    assert parser.gets() is False


def test_parser_waits_for_partial_replies() -> None:
    parser = RespParser()
    wire = b"*2\r\n$5\r\nhello\r\n:7\r\n"
    for byte in wire[:-1]:
        parser.feed(bytes([byte]))
        assert parser.gets() is False
    parser.feed(wire[-1:])
    assert parser.gets() == [b"hello", 7]


def test_parser_returns_errors_as_values() -> None:
    parser = RespParser()
    parser.feed(b"-NOSCRIPT No matching script\r\n")
    reply = parser.gets()
    assert isinstance(reply, rexc.ResponseError)
    assert str(reply).startswith("NOSCRIPT")


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        ("NOSCRIPT No matching script", rexc.NoScriptError),
        ("LOADING Redis is loading the dataset in memory", rexc.BusyLoadingError),
        ("READONLY You can't write against a read only replica.", rexc.ReadOnlyError),
        ("WRONGPASS invalid username-password pair", rexc.AuthenticationError),
        ("NOPERM this user has no permissions", rexc.NoPermissionError),
        ("ERR wrong number of arguments", rexc.ResponseError),
    ],
)
def test_error_replies_map_to_redis_py_classes(message: str, cls: type[Exception]) -> None:
    error = error_for(message)
    assert type(error) is cls
    assert str(error) == message


def test_tls_context_follows_the_url() -> None:
    plain = MuxClient("redis://localhost:6379/0", {})
    assert plain._ssl_context() is None
    verified = MuxClient("rediss://localhost:6380/0", {})
    context = verified._ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    relaxed = MuxClient("rediss://localhost:6380/0?ssl_cert_reqs=none", {})
    loose = relaxed._ssl_context()
    assert loose is not None
    assert loose.verify_mode == ssl.CERT_NONE


async def test_a_refused_handshake_leaves_no_reply_unread(caplog: pytest.LogCaptureFixture) -> None:
    # A server that is not Redis (here: one that reads the first bytes and hangs up)
    # fails the pipelined AUTH and SELECT together; both replies must be collected, or
    # asyncio logs "Future exception was never retrieved" with a traceback.
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = MuxClient(f"redis://:secret@127.0.0.1:{port}/8", {})
    try:
        with pytest.raises(rexc.ConnectionError):
            await client.execute_command("PING")
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
