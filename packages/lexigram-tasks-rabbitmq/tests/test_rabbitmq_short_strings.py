"""Short strings and field-table names that are not UTF-8 decode with their bytes escaped."""

from __future__ import annotations

import struct

import pamqp.common
import pamqp.decode
import pamqp.encode
import pytest

from lexigram.tasks.backends.rabbitmq._short_strings import read_short_strings_leniently

read_short_strings_leniently()


def long_string(text: bytes) -> bytes:
    return b"S" + struct.pack(">I", len(text)) + text


def table(*fields: tuple[bytes, bytes]) -> bytes:
    """A field table from (raw name, typed value) pairs."""
    body = b"".join(bytes([len(name)]) + name + value for name, value in fields)
    return struct.pack(">I", len(body)) + body


def escaped(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def test_valid_tables_read_exactly_as_pamqp_writes_them() -> None:
    headers: pamqp.common.FieldTable = {
        "x-delivery-count": 3,
        "name": "café",
        "nested": {"flag": True},
        "list": [1, "a"],
    }
    encoded = pamqp.encode.field_table(headers)

    assert pamqp.decode.by_type(encoded, "table") == (len(encoded), headers)


def test_names_that_are_not_utf8_keep_their_bytes_escaped_at_every_depth() -> None:
    inner = table((b"k\xfe", long_string(b"v")))
    encoded = table(
        (b"x-trace-\xff", long_string(b"a")),
        (b"x-meta", b"F" + inner),
        (b"x-list", b"A" + struct.pack(">I", len(inner) + 1) + b"F" + inner),
        (b"x-raw", long_string(b"\xff")),  # a long-string value: pamqp's bytes, as before
    )

    consumed, headers = pamqp.decode.by_type(encoded, "table")

    assert consumed == len(encoded)
    assert headers == {
        escaped(b"x-trace-\xff"): "a",
        "x-meta": {escaped(b"k\xfe"): "v"},
        "x-list": [{escaped(b"k\xfe"): "v"}],
        "x-raw": b"\xff",
    }


def test_a_table_cut_short_is_still_refused() -> None:
    encoded = table((b"x-\xff", long_string(b"value")))

    with pytest.raises(ValueError, match="exceeds"):
        pamqp.decode.by_type(encoded[:-3], "table")
    # The first name is not UTF-8, so the escaping reader meets the second, cut short.
    fields = b"\x01\xff" + long_string(b"v") + b"\x09x"
    with pytest.raises(ValueError, match="key length"):
        pamqp.decode.by_type(struct.pack(">I", len(fields)) + fields, "table")


def test_a_short_string_that_is_not_utf8_is_escaped() -> None:
    assert pamqp.decode.by_type(b"\x03a\xffb", "shortstr") == (4, escaped(b"a\xffb"))
