"""Compact JSON for values on every job's path: one built encoder, called directly.

`json.JSONEncoder.encode` builds the json module's C encoder anew on every call, through
two Python methods (about 85 bytecodes a value); a backend that stores a result per job
pays that per job. `json_encoder` builds the C encoder once and returns a function that
calls it, writing exactly what ``JSONEncoder(separators=(",", ":"), ...).encode`` writes.
"""

from __future__ import annotations

import importlib
import json
import json.encoder
import logging
import re
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


def json_encoder(
    *,
    default: Callable[[Any], Any] | None = None,
    ensure_ascii: bool = False,
    allow_nan: bool = False,
) -> Callable[[Any], str]:
    """Return a function writing a value as compact JSON (``,`` and ``:`` separators).

    The function writes what ``json.JSONEncoder(separators=(",", ":"), ensure_ascii=...,
    allow_nan=..., default=...).encode(value)`` writes and raises what it raises: a
    `TypeError` for a value JSON cannot carry (unless `default` turns it into one it
    can), a `ValueError` for NaN or infinities when `allow_nan` is False and for a
    circular structure.

    Args:
        default: Called with each value JSON cannot carry; returns one it can. None
            refuses such values with `TypeError`.
        ensure_ascii: Escape every non-ASCII character.
        allow_nan: Write NaN and infinities as ``NaN``/``Infinity`` (not JSON).
    """
    reference = json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=allow_nan, default=default
    )
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # no C accelerator (another interpreter): the encoder itself
        return reference.encode
    strings = (
        json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    )
    # No circular-reference markers: a dict of them shared between calls would keep the
    # entries an interrupted call left and report cycles that are not there. A cycle
    # exhausts the recursion limit instead, reported below as the json module reports it.
    sort_keys = skip_keys = False
    encode_parts = make_encoder(
        None, reference.default, strings, None, ":", ",", sort_keys, skip_keys, allow_nan
    )
    join = "".join

    def encode(value: Any) -> str:
        try:
            return join(encode_parts(value, 0))
        except RecursionError:
            msg = "Circular reference detected (or nesting deeper than the recursion limit)"
            raise ValueError(msg) from None

    encode.__doc__ = "Write `value` as compact JSON (see `json_encoder`)."
    return encode


def _from_orjson(name: str) -> Any:
    """``orjson.<name>`` when orjson is installed (an optional dependency), else None."""
    try:
        return getattr(importlib.import_module("orjson"), name)
    except ImportError:
        return None


orjson_dumps: Callable[[Any], bytes] | None = _from_orjson("dumps")
"""``orjson.dumps`` when orjson is installed (every broker backend installs it), else None."""
orjson_loads: Callable[[bytes | str], Any] | None = _from_orjson("loads")
"""``orjson.loads`` when orjson is installed, else None."""


def _exact_repr(value: float) -> str:
    return repr(value) if isinstance(value, int) else float.__repr__(value)


def json_number(value: float | None) -> str:
    """A number as JSON, exactly (its shortest round-trip form); null for None.

    orjson finds the shortest form about four times as fast as ``float.__repr__`` (whose
    arbitrary-precision search costs about 7,000 instructions for an epoch time); the
    two may write one value differently (``1e-05`` and ``0.00001``), never two values
    alike. A value JSON cannot carry (NaN, infinities) is written as null: a JSON reader
    would refuse the whole record.
    """
    if value is None or value - value != 0.0:  # None, NaN or an infinity
        return "null"
    if orjson_dumps is None:
        return _exact_repr(value)
    try:
        return orjson_dumps(value).decode()
    except TypeError:  # an int beyond 64 bits, a float subclass (numpy's float64)
        return _exact_repr(value)


strict_json = json_encoder()
"""Compact JSON refusing what JSON cannot carry: the job envelope's and the stores' first try."""
_lenient = json_encoder(default=repr)


def _finite(value: Any) -> Any:
    """`value` with every NaN and infinity inside lists, tuples and dicts made None.

    JSON has no spelling for them: the json module writes ``NaN``, which PostgreSQL's
    ``json`` columns, orjson and other languages' readers refuse, so a record holding
    one could not be stored or read back at all. Null is what `json_number` writes too.
    """
    if isinstance(value, float):
        return value if value - value == 0.0 else None
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_FIRST_ASTRAL = 0x10000  # beyond the basic plane: JSON writes a surrogate pair


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    if code < _FIRST_ASTRAL:
        return f"\\u{code:04x}"
    code -= _FIRST_ASTRAL
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def has_utf8_form(text: str) -> bool:
    """True unless `text` holds a lone surrogate, which UTF-8 cannot encode.

    A flag read for ASCII text (every generated id, most JSON), one encoding pass otherwise.
    """
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def sendable_json(text: str) -> str:
    r"""JSON text that every UTF-8 client can send: `text`, or its non-ASCII escaped.

    A string holding a lone surrogate (a file name decoded with ``surrogateescape``, say)
    cannot be encoded as UTF-8, so Redis, SQLite and PostgreSQL clients refuse the whole
    record. JSON's ``\u`` escapes carry it, and the json module reads the string back
    (orjson refuses a lone surrogate's escape: read stored records with the json module).
    A text of ASCII only, or without a lone surrogate, is returned as it is (the check is
    a flag read for ASCII, one encoding pass otherwise).
    """
    if has_utf8_form(text):
        return text
    # Non-ASCII characters occur only inside JSON strings, where escapes are valid.
    return _NON_ASCII.sub(_escape, text)


def json_for_storage(value: Any, *, what: str = "value", of: str = "") -> str:
    """Encode a value a store keeps (a result, progress) as compact JSON, never refusing it.

    Stores receive what handlers returned; refusing a result after its job ran would
    lose it, so a leaf JSON cannot carry is kept as its ``repr`` (a NaN or an infinity
    as null, which is JSON) and a warning names the value (`what`, then `of` when given:
    callers on every job's path pass the job id apart, so the warning's text is only put
    together when there is one).
    """
    return sendable_json(storage_json(value, what=what, of=of))


def storage_json(value: Any, *, what: str = "value", of: str = "") -> str:
    """`json_for_storage` before `sendable_json`: for a writer that checks its whole record."""
    try:
        return strict_json(value)
    except (TypeError, ValueError) as exc:
        logger.warning(
            "A %s%s is not JSON-serializable (%s); its non-JSON parts are stored as repr() "
            "(NaN and infinities as null).",
            what,
            f" {of}" if of else "",
            exc,
        )
        try:
            finite = _finite(value)
        except RecursionError:
            msg = "Circular reference detected (or nesting deeper than the recursion limit)"
            raise ValueError(msg) from None
        return _lenient(finite)


__all__ = ["json_encoder", "json_for_storage", "sendable_json"]
