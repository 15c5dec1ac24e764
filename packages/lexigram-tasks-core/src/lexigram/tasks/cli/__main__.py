"""``python -m lexigram.tasks.cli``: the same as the ``lexigram-tasks`` command."""

from __future__ import annotations

from lexigram.tasks.cli import main

if __name__ == "__main__":
    main()
