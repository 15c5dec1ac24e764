"""Envelope signing: an HMAC-SHA256 over the encoded job, with a key id for rotation.

`EnvelopeSigner` holds one signing key and any number of older keys still accepted
when verifying. Every key is named by a key id derived from the key itself (a short
fingerprint), so producers and workers agree on ids without configuring them, and a
rotation is: add the new key as ``signing_key`` and keep the old one in
``verification_keys`` until no job signed with it remains.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

_KID_CONTEXT = b"lexigram-tasks key id v1\x00"


def _as_bytes(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


def key_id(key: bytes | str) -> str:
    """Return the public id of a signing key: 8 hex digits of a hash of the key.

    Args:
        key: The secret key.

    Returns:
        The key id written next to every signature made with that key.
    """
    return hashlib.sha256(_KID_CONTEXT + _as_bytes(key)).hexdigest()[:8]


class EnvelopeSigner:
    """Signs job envelopes with one key and verifies them against every configured key.

    Args:
        signing_key: The key new envelopes are signed with (accepted when verifying).
        verification_keys: Older keys whose signatures are still accepted.
        accept_unsigned: Let unsigned envelopes through (a badly signed one is still
            refused): for the rollout of signing, while processes without the key may
            still write unsigned jobs (a producer, or a worker re-enqueueing a retry).

    Raises:
        ValueError: A key is empty.
    """

    __slots__ = ("_keys", "_signing_id", "_signing_key", "accept_unsigned")

    def __init__(
        self,
        signing_key: bytes | str,
        verification_keys: Sequence[bytes | str] = (),
        *,
        accept_unsigned: bool = False,
    ) -> None:
        keys = [_as_bytes(signing_key), *(_as_bytes(key) for key in verification_keys)]
        if any(not key for key in keys):
            msg = "An envelope signing key is empty. Set a long random secret (32 bytes or more)."
            raise ValueError(msg)
        self.accept_unsigned = accept_unsigned
        self._signing_key = keys[0]
        self._signing_id = key_id(keys[0])
        self._keys = {key_id(key): key for key in reversed(keys)}

    @property
    def key_id(self) -> str:
        """The id of the signing key (written into every envelope this signer signs)."""
        return self._signing_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of every key accepted when verifying (the signing key first)."""
        return (self._signing_id, *(kid for kid in self._keys if kid != self._signing_id))

    def sign(self, body: bytes) -> str:
        """Return the signature of `body`: ``"<key id>.<hex HMAC-SHA256>"``."""
        mac = hmac.new(self._signing_key, body, hashlib.sha256).hexdigest()
        return f"{self._signing_id}.{mac}"

    def check(self, signature: str, body: bytes) -> str | None:
        """Return None when `signature` is a valid signature of `body`, else why not.

        Args:
            signature: The ``"<key id>.<hex mac>"`` string from the envelope.
            body: The exact signed bytes.

        Returns:
            None if valid; otherwise one sentence describing the mismatch.
        """
        kid, _, mac = signature.partition(".")
        key = self._keys.get(kid)
        if key is None:
            return (
                f"it is signed with key id {kid!r}, which is not among the configured keys "
                f"{list(self.key_ids)}"
            )
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac):
            return f"the signature made with key id {kid!r} is wrong (altered payload or other key)"
        return None

    def __repr__(self) -> str:
        return f"EnvelopeSigner(key_ids={list(self.key_ids)!r})"
