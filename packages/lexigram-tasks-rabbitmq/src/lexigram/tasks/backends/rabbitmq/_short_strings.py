"""AMQP short strings that are not UTF-8: read with their bad bytes escaped, not fatal.

AMQP 0-9-1 short strings are octets, and RabbitMQ passes on whatever a publisher put in a
message's ``message-id``, ``correlation-id`` or ``type``, or in the names of its headers.
pamqp decodes them as UTF-8 and raises for anything else; aiormq then treats the content
header as a broken frame and closes the connection. The broker redelivers the message to
the next connection, which fails the same way: one message from another program (a binary
correlation id, a header named in Latin-1) stopped every consumer of its queue, for ever.

`read_short_strings_leniently` makes pamqp decode such a string with ``surrogateescape``
instead, in a property and in a field table's names (nested tables and arrays included).
Valid UTF-8 reads as before (pamqp's strict decoder runs first); only what used to raise
changes, in every pamqp user of the process, since pamqp has one decoder table. The job
itself comes from the message body and our headers are read by their (ASCII) names; a
poison stand-in named by such a message id gets a printable id (`Delivery`). Long-string
values that are not UTF-8 need nothing: pamqp already returns them as bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pamqp.decode

__all__ = ["read_short_strings_leniently"]

_strict_short_str: Callable[[bytes], tuple[int, str]] = pamqp.decode.short_str
_strict_field_table: Callable[[bytes], tuple[int, dict[str, Any]]] = pamqp.decode.field_table
_TABLE_SIZE = struct.Struct(">I")


def _short_str(value: bytes) -> tuple[int, str]:
    """The ``short_str`` of pamqp, but a string that is not UTF-8 keeps its bytes escaped."""
    try:
        return _strict_short_str(value)
    except UnicodeDecodeError:
        length = value[0]
        return length + 1, value[1 : length + 1].decode("utf-8", "surrogateescape")


def _field_table(value: bytes) -> tuple[int, dict[str, Any]]:
    """The ``field_table`` of pamqp, but a name that is not UTF-8 keeps its bytes escaped."""
    try:
        return _strict_field_table(value)
    except UnicodeDecodeError:
        return _escaped_field_table(value)


def _escaped_field_table(value: bytes) -> tuple[int, dict[str, Any]]:
    """Read a field table (size, then name and typed value pairs), names escaped.

    Only called once pamqp's reader met a name that is not UTF-8: it has checked the size.
    """
    end = _TABLE_SIZE.size + _TABLE_SIZE.unpack_from(value)[0]
    table: dict[str, Any] = {}
    offset = _TABLE_SIZE.size
    while offset < end:
        name_end = offset + 1 + value[offset]
        if name_end > end:
            msg = "Field table key length exceeds data"
            raise ValueError(msg)
        name = value[offset + 1 : name_end].decode("utf-8", "surrogateescape")
        # A nested table's value comes back through `_field_table` (pamqp's type table).
        consumed, table[name] = pamqp.decode.embedded_value(value[name_end:])
        offset = name_end + consumed
    return end, table


def read_short_strings_leniently() -> None:
    """Make pamqp read short strings and field-table names leniently (idempotent)."""
    pamqp.decode.METHODS["shortstr"] = _short_str
    pamqp.decode.METHODS["table"] = _field_table
    pamqp.decode.TABLE_MAPPING[b"F"] = _field_table
