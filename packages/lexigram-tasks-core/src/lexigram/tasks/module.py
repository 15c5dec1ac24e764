"""`TasksModule` under its published import path, ``lexigram.tasks.module``."""

from __future__ import annotations

from lexigram.tasks.di import TasksModule

__all__ = ["TasksModule"]
