"""`new_job_id`: the id a job gets when its producer names none.

Ids are time-ordered (the UUID version 7 layout), so jobs made one after another have ids
that sort next to each other: a backend that keeps its jobs in an index on the id (the
SQL backends' primary keys) inserts and deletes them on the same few index pages, where
random version 4 ids put every job on a page of its own once the index outgrows the
cache. The text is still a canonical UUID, so code that parses ids keeps working.
"""

from __future__ import annotations

import os
import time

__all__ = ["new_job_id"]

# Version 7 in the top nibble of the third group, variant 0b10 in the top bits of the
# fourth: the layout's fixed bits inside the 128-bit value.
_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
# The random bits: 12 after the version nibble, 62 after the variant.
_RANDOM_MASK = (0xFFF << 64) | ((1 << 62) - 1)


def new_job_id() -> str:
    """Return a new job id: a time-ordered UUID (version 7 layout) as canonical text.

    The first 48 bits are the Unix time in milliseconds, then the version and variant
    bits and 74 random bits (from `os.urandom`, as `uuid.uuid4` uses). Ids of one
    millisecond are in random order among themselves; a clock set back makes later ids
    sort earlier, which costs index locality, never uniqueness.

    Returns:
        A string such as ``0193a2b4-7c1d-7e2f-9a3b-4c5d6e7f8091``.

    Example:
        job = Job(id=new_job_id(), name="send_email")  # what Job() does by itself
    """
    millis = time.time_ns() // 1_000_000
    bits = (millis << 80) | _VERSION_AND_VARIANT | (int.from_bytes(os.urandom(10)) & _RANDOM_MASK)
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
