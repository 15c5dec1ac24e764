"""Errors raised by ``lexigram.app``.

Hierarchy::

    RuntimeError
    └── ApplicationStartError   a provider or module hook failed while the application started
"""

from __future__ import annotations

__all__ = ["ApplicationStartError"]


class ApplicationStartError(RuntimeError):
    """Raised when ``Application.start()`` fails; the cause is chained as ``__cause__``.

    Everything that had booted is shut down again before it is raised.

    Attributes:
        provider: The name of the provider that failed, or ``None`` when no single provider did
            (a dependency problem between providers, a module hook).
        phase: ``"order"``, ``"register"``, ``"boot"`` or ``"module"``.
    """

    def __init__(self, message: str, *, provider: str | None, phase: str) -> None:
        super().__init__(message)
        self.provider = provider
        self.phase = phase


def as_sentence(exc: BaseException) -> str:
    """`exc` as ``Type: message.``, for the message of an `ApplicationStartError`.

    Not ``repr(exc)``: a message holding both kinds of quote would read escaped. Kept on
    one line, as repr kept it: a message of several lines is joined with spaces (the
    exception itself is chained, whole). Ends with a full stop unless it has one.
    """
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    sentence = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return sentence if sentence.endswith((".", "!", "?")) else f"{sentence}."
