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
