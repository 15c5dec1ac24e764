"""The one error type of the operations: a user mistake, said in one sentence."""

from __future__ import annotations


class OperationError(Exception):
    """An operation cannot be done as asked (unknown id, ambiguous prefix, gone meanwhile).

    The command line prints `message` as its one-line error; the dashboard shows it on
    the page.

    Args:
        message: What is wrong and what to do, ending with a full stop.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
