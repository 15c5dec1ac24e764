"""Make `reference_backend` importable for the kit's test module (pytest's importlib mode)."""

# ruff: noqa: INP001 - a directory of scripts and tests run by path, not a package

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
