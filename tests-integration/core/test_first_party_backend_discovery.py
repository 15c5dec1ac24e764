"""Core behaviour checked with the first-party backends installed (their URL schemes, config
fields and type names); core's own unit session installs core alone."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from lexigram.tasks import _backends
from lexigram.tasks.config import NamedTaskConfig, TaskBackendConfig


class _FakeDist:
    def __init__(self, name: str, version: str = "1.0") -> None:
        self.name = name
        self.version = version


class _FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint with a chosen distribution."""

    def __init__(self, name: str, value: str, dist: str, target: Any = None) -> None:
        self.name = name
        self.value = value
        self.dist = _FakeDist(dist)
        self._target = target

    def load(self) -> Any:
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


class _FakeEntryPoints(list[Any]):
    @property
    def names(self) -> set[str]:
        return {ep.name for ep in self}


def test_spec_from_config_unwraps_secret_and_prefers_generic_url() -> None:
    named = NamedTaskConfig(
        name="n", type="redis", redis_url=SecretStr("redis://u:pw@h:1/0"), queue_name="q"
    )
    spec = _backends.spec_from_config(named)
    assert spec.url == "redis://u:pw@h:1/0"
    assert "pw" not in repr(spec)
    assert spec.name == "n"
    generic = TaskBackendConfig(type="acme", url=SecretStr("acme://x"))
    assert _backends.spec_from_config(generic).url == "acme://x"
