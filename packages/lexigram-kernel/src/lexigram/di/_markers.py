"""``Named``: the marker that picks one of several bindings of the same type."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Named", "named"]


@dataclass(frozen=True, slots=True)
class Named:
    """Select the binding registered under ``name``.

    Use it inside ``typing.Annotated``, both when asking the container directly and in the
    type hints of an injected constructor or factory::

        queue = await container.resolve(Annotated[TaskQueueProtocol, Named("emails")])

        class Mailer:
            def __init__(self, queue: Annotated[TaskQueueProtocol, Named("emails")]) -> None: ...

    The container looks such a request up under the key ``(TaskQueueProtocol, "emails")``, the
    key that ``container.singleton(TaskQueueProtocol, queue, name="emails")`` writes.

    Attributes:
        name: The binding name.
    """

    name: str

    def __post_init__(self) -> None:
        value: object = self.name  # callers without a type checker may pass anything
        if not isinstance(value, str) or not value:
            msg = f"Named() needs a non-empty string, got {value!r}. Pass the binding name."
            raise TypeError(msg)


def named(name: str) -> Named:
    """Return ``Named(name)``; a shorthand for use inside ``Annotated[...]``.

    Args:
        name: The binding name.

    Returns:
        The marker.
    """
    return Named(name)
