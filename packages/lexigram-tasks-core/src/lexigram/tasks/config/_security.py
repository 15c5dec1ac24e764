"""The ``tasks.security`` section: envelope signing keys and the payload size limit."""

from __future__ import annotations

import logging
from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator

from lexigram.contracts.tasks import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    EnvelopeSigner,
    configure_envelope,
)
from lexigram.tasks.config._sections import _empty_list, _fix, _Section
from lexigram.tasks.config._validation import InvolvedValueError

logger = logging.getLogger(__name__)

_SHORT_KEY_BYTES = 32
"""Below this, a signing key is warned about (the length docs/configuration.md asks for)."""


class TaskSecurityConfig(_Section):
    """Envelope security: an optional HMAC signature on every job, and a size limit.

    Attributes:
        signing_key: Secret every envelope this process encodes is signed with
            (HMAC-SHA256). When set, this process only runs signed jobs: an unsigned
            or badly signed job is dead-lettered, never run. None: no signing, no check
            (signed jobs still run).
        verification_keys: Older keys whose signatures are still accepted (key
            rotation). Needs `signing_key`.
        accept_unsigned: Run unsigned jobs too (badly signed ones are still refused),
            while signing is rolled out: processes without the key yet write unsigned
            jobs, retries included. Needs `signing_key`; turn it off once every process
            has the key and no unsigned job is left.
        max_payload_bytes: Largest encoded job accepted at enqueue, in bytes (1 MiB).
    """

    config_path: ClassVar[str] = "tasks.security"

    signing_key: SecretStr | None = None
    verification_keys: list[SecretStr] = Field(default_factory=_empty_list)
    accept_unsigned: bool = False
    max_payload_bytes: int = Field(
        default=DEFAULT_MAX_PAYLOAD_BYTES,
        gt=0,
        json_schema_extra=_fix("Set a size in bytes ≥ 1, e.g. 1048576 (1 MiB)."),
    )

    @model_validator(mode="after")
    def _check_keys(self) -> Self:
        # The errors name the keys involved, so the variables that set them are named.
        keys = [self.signing_key, *self.verification_keys]
        if any(key is not None and not key.get_secret_value() for key in keys):
            msg = "a signing key is empty. Set a long random secret (32 bytes or more)"
            raise InvolvedValueError(msg, involves=[("signing_key",), ("verification_keys",)])
        if self.verification_keys and self.signing_key is None:
            msg = (
                "verification_keys is set without signing_key. Set signing_key too: a worker "
                "that checks signatures must also sign the jobs it re-enqueues"
            )
            raise InvolvedValueError(msg, involves=[("verification_keys",)])
        if self.accept_unsigned and self.signing_key is None:
            msg = (
                "accept_unsigned is set without signing_key. Without a key every job runs "
                "already; set signing_key to sign jobs while unsigned ones still run"
            )
            raise InvolvedValueError(msg, involves=[("accept_unsigned",)])
        return self

    def signer(self) -> EnvelopeSigner | None:
        """Return the `EnvelopeSigner` these keys describe, or None without a key."""
        if self.signing_key is None:
            return None
        return EnvelopeSigner(
            self.signing_key.get_secret_value(),
            [key.get_secret_value() for key in self.verification_keys],
            accept_unsigned=self.accept_unsigned,
        )

    def apply(self) -> None:
        """Make this section the process's envelope settings (`configure_envelope`).

        The composition root (`TaskProvider` and every ``lexigram-tasks`` command) calls
        it once per configuration it builds from, so every backend signs, verifies and
        bounds envelopes alike.
        """
        key = self.signing_key
        if key is not None and len(key.get_secret_value().encode()) < _SHORT_KEY_BYTES:
            # Not refused: a deployment may have a shorter key already in use everywhere.
            logger.warning(
                "tasks.security.signing_key is %d bytes long; an HMAC key should have "
                "%d or more random bytes (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))').",
                len(key.get_secret_value().encode()),
                _SHORT_KEY_BYTES,
            )
        configure_envelope(signer=self.signer(), max_payload_bytes=self.max_payload_bytes)
