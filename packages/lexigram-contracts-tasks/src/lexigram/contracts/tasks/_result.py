"""`Result`, `Ok` and `Err`: explicit success-or-failure values.

Queue operations that can fail for a recoverable reason (a full queue, an invalid
payload) return a `Result` instead of raising, so a caller cannot forget the failure
path. Infrastructure failures (a lost connection) are still raised.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeAlias, TypeVar, Union, overload

T = TypeVar("T")
E = TypeVar("E")
U = TypeVar("U")
F = TypeVar("F")


class UnwrapError(Exception):
    """Raised when `unwrap` is called on an `Err` or `unwrap_err` on an `Ok`."""


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass(frozen=True, slots=True)
class Ok(Generic[T]):
    """The success variant of `Result`, holding `value`."""

    value: T

    def is_ok(self) -> bool:
        """Return True: this is a success."""
        return True

    def is_err(self) -> bool:
        """Return False: this is not a failure."""
        return False

    def unwrap(self) -> T:
        """Return the success value."""
        return self.value

    def unwrap_err(self) -> NoReturn:
        """Raise `UnwrapError`: an `Ok` holds no error."""
        msg = f"Called unwrap_err() on Ok({self.value!r}). Check is_err() first."
        raise UnwrapError(msg)

    def unwrap_or(self, default: object) -> T:
        """Return the success value (the default is ignored)."""
        return self.value

    def expect(self, message: str) -> T:
        """Return the success value (the message is used only by `Err`)."""
        return self.value

    def ok(self) -> T:
        """Return the success value."""
        return self.value

    def err(self) -> None:
        """Return None: an `Ok` holds no error."""

    def map_sync(self, fn: Callable[[T], U]) -> Ok[U]:
        """Return `Ok(fn(value))`."""
        return Ok(fn(self.value))

    def map_err_sync(self, fn: Callable[[Any], Any]) -> Ok[T]:
        """Return self unchanged: there is no error to map."""
        return self

    def and_then_sync(self, fn: Callable[[T], Result[U, F]]) -> Result[U, F]:
        """Return `fn(value)`, chaining a further fallible step."""
        return fn(self.value)

    @overload
    async def map(self, fn: Callable[[T], Awaitable[U]]) -> Ok[U]: ...
    @overload
    async def map(self, fn: Callable[[T], U]) -> Ok[U]: ...
    async def map(self, fn: Callable[[T], Any]) -> Ok[Any]:
        """Return `Ok(fn(value))`; `fn` may be sync or async."""
        return Ok(await _maybe_await(fn(self.value)))

    async def and_then(
        self, fn: Callable[[T], Result[U, F] | Awaitable[Result[U, F]]]
    ) -> Result[U, F]:
        """Return `fn(value)`; `fn` may be sync or async."""
        result: Result[U, F] = await _maybe_await(fn(self.value))
        return result

    def match(self, *, ok: Callable[[T], U], err: Callable[[Any], U]) -> U:
        """Call `ok(value)` and return what it returns."""
        return ok(self.value)


@dataclass(frozen=True, slots=True)
class Err(Generic[E]):
    """The failure variant of `Result`, holding `error`."""

    error: E

    def is_ok(self) -> bool:
        """Return False: this is a failure."""
        return False

    def is_err(self) -> bool:
        """Return True: this is a failure."""
        return True

    def unwrap(self) -> NoReturn:
        """Raise the held error if it is an exception, else `UnwrapError`."""
        if isinstance(self.error, BaseException):
            raise self.error
        msg = f"Called unwrap() on Err({self.error!r}). Check is_ok() first."
        raise UnwrapError(msg)

    def unwrap_err(self) -> E:
        """Return the error value."""
        return self.error

    def unwrap_or(self, default: U) -> U:
        """Return `default`."""
        return default

    def expect(self, message: str) -> NoReturn:
        """Raise `UnwrapError` with `message` and the held error."""
        msg = f"{message}: {self.error!r}"
        raise UnwrapError(msg)

    def ok(self) -> None:
        """Return None: an `Err` holds no success value."""

    def err(self) -> E:
        """Return the error value."""
        return self.error

    def map_sync(self, fn: Callable[[Any], Any]) -> Err[E]:
        """Return self unchanged: there is no value to map."""
        return self

    def map_err_sync(self, fn: Callable[[E], F]) -> Err[F]:
        """Return `Err(fn(error))`."""
        return Err(fn(self.error))

    def and_then_sync(self, fn: Callable[[Any], Any]) -> Err[E]:
        """Return self unchanged: the chain stops at the first failure."""
        return self

    async def map(self, fn: Callable[[Any], Any]) -> Err[E]:
        """Return self unchanged: there is no value to map."""
        return self

    async def and_then(self, fn: Callable[[Any], Any]) -> Err[E]:
        """Return self unchanged: the chain stops at the first failure."""
        return self

    def match(self, *, ok: Callable[[Any], U], err: Callable[[E], U]) -> U:
        """Call `err(error)` and return what it returns."""
        return err(self.error)


Result: TypeAlias = Union[Ok[T], Err[E]]  # noqa: UP007 - a subscriptable runtime alias needs Union
"""Either `Ok(value)` or `Err(error)`; use `match` statements or `is_ok()`."""
