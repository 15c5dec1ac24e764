from __future__ import annotations

from lexigram.di import HealthStatus, Provider, ProviderPriority, ProviderState


class CacheProvider(Provider):
    name = "cache"
    priority = ProviderPriority.INFRASTRUCTURE
    dependencies: tuple[str, ...] = ("settings",)


def test_provider_priority_values_match_the_spec():
    assert [(p.name, p.value) for p in ProviderPriority] == [
        ("CRITICAL", 0),
        ("INFRASTRUCTURE", 10),
        ("SECURITY", 20),
        ("NORMAL", 30),
        ("APPLICATION", 40),
        ("DOMAIN", 50),
        ("PRESENTATION", 80),
        ("COMMS", 90),
        ("LOW", 100),
    ]


def test_provider_class_attributes_are_the_defaults():
    provider = CacheProvider()
    assert provider.name == "cache"
    assert provider.priority is ProviderPriority.INFRASTRUCTURE
    assert provider.dependencies == ("settings",)
    assert provider.optional_dependencies == ()
    assert provider.boot_timeout is None
    assert provider.required is True
    assert provider.state is ProviderState.CREATED
    assert not provider.is_booted


def test_provider_constructor_arguments_override_class_attributes():
    provider = CacheProvider(
        name="c2",
        priority=ProviderPriority.LOW,
        dependencies=[],
        optional_dependencies=["metrics"],
        boot_timeout=2.5,
        required=False,
    )
    assert provider.name == "c2"
    assert provider.priority == ProviderPriority.LOW
    assert not provider.dependencies
    assert provider.optional_dependencies == ("metrics",)
    assert provider.boot_timeout == 2.5
    assert provider.required is False


def test_provider_name_defaults_to_the_class_name():
    class Plain(Provider): ...

    assert Plain().name == "Plain"
    assert Plain().priority is ProviderPriority.NORMAL


def test_provider_from_config_keeps_the_config():
    config = {"ttl": 5}
    provider = CacheProvider.from_config(config, name="from-config")
    assert provider.config is config
    assert provider.name == "from-config"
    assert CacheProvider().config is None


def test_provider_matches_by_name_or_class():
    provider = CacheProvider()
    assert provider.matches("cache")
    assert provider.matches(CacheProvider)
    assert provider.matches(Provider)
    assert not provider.matches("other")


async def test_provider_default_health_follows_the_state():
    provider = CacheProvider()
    result = await provider.health_check()
    assert result.status is HealthStatus.UNHEALTHY
    assert result.message == "Provider 'cache' is created, not booted."
    provider.set_state(ProviderState.BOOTED)
    assert (await provider.health_check()).status is HealthStatus.HEALTHY
    assert "state=booted" in repr(provider)
