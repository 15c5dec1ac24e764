"""The application shell of the lexigram kernel: :class:`Application`.

It owns a :class:`lexigram.di.Container`, drives the providers added to it (directly or through
modules) through register, boot and shutdown, aggregates their health and runs until SIGINT or
SIGTERM.
"""

from __future__ import annotations

from lexigram.app._application import Application
from lexigram.app._errors import ApplicationStartError

__all__ = ["Application", "ApplicationStartError"]
