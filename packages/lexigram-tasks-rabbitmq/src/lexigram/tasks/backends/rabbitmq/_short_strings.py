"""AMQP short strings that are not UTF-8: read with their bad bytes escaped, not fatal.

AMQP 0-9-1 short strings are octets, and RabbitMQ passes on whatever a publisher put in a
message's ``message-id``, ``correlation-id`` or ``type``. pamqp decodes them as UTF-8 and
raises for anything else; aiormq then treats the content header as a broken frame and
closes the connection. The broker redelivers the message to the next connection, which
fails the same way: one message from another program (a binary correlation id) stopped
every consumer of its queue, for ever.

`read_short_strings_leniently` makes pamqp decode such a string with ``surrogateescape``
instead. Valid UTF-8 reads as before (the strict decoder runs first); only what used to
raise changes, in every pamqp user of the process, since pamqp has one decoder table. The
job itself comes from the message body; a poison stand-in named by such a message id
gets a printable id (`Delivery`). Field-table keys (header names) are still decoded
strictly by pamqp.
"""

from __future__ import annotations

from collections.abc import Callable

import pamqp.decode

__all__ = ["read_short_strings_leniently"]

_strict: Callable[[bytes], tuple[int, str]] = pamqp.decode.short_str


def _short_str(value: bytes) -> tuple[int, str]:
    """The ``short_str`` of pamqp, but a string that is not UTF-8 keeps its bytes escaped."""
    try:
        return _strict(value)
    except UnicodeDecodeError:
        length = value[0]
        return length + 1, value[1 : length + 1].decode("utf-8", "surrogateescape")


def read_short_strings_leniently() -> None:
    """Make pamqp read short strings with `_short_str` (idempotent)."""
    pamqp.decode.METHODS["shortstr"] = _short_str
