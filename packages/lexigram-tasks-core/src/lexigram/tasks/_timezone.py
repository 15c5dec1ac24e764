"""`resolve_timezone`: an IANA timezone name checked once, for the scheduler and the config.

Apart from the scheduling package, so that validating ``tasks.scheduler.timezone`` does
not import the scheduler.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def resolve_timezone(name: str) -> ZoneInfo:
    """Return the `ZoneInfo` for an IANA timezone name.

    Args:
        name: IANA timezone name such as ``"UTC"`` or ``"Europe/Paris"``.

    Returns:
        The timezone.

    Raises:
        ValueError: The name is not a known timezone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = (
            f"Timezone {name!r} is not a known IANA timezone. Use a name such as 'UTC' or "
            "'Europe/Paris' (TaskSchedulerConfig.timezone); on systems without a timezone "
            "database, install the tzdata package."
        )
        raise ValueError(msg) from exc
