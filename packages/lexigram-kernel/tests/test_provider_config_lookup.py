"""How a provider finds its configuration in the application's config (config_key/config_model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from lexigram.app import Application, ApplicationStartError
from lexigram.di import (
    ApplicationConfig,
    Container,
    ContainerRegistrarProtocol,
    Provider,
)


@dataclass
class MailConfig:
    host: str = "localhost"
    port: int = 25


@dataclass
class SecureMailConfig(MailConfig):
    tls: bool = True


class ValidatedConfig:
    """A model with ``model_validate`` (as pydantic's), which load_config prefers."""

    def __init__(self, host: str) -> None:
        self.host = host

    @classmethod
    def model_validate(cls, data: dict[str, Any]) -> ValidatedConfig:
        return cls(host=data["host"].upper())


class MailProvider(Provider):
    name = "mail"
    config_key = "mail"
    config_model = MailConfig

    def __init__(self) -> None:
        super().__init__()
        self.found: Any = "not registered"

    async def register(self, container: ContainerRegistrarProtocol) -> None:
        self.found = await self.application_config(container)


class ValidatedProvider(Provider):
    config_key = "mail"
    config_model = ValidatedConfig


class ConfigError(ValueError):
    """The error a provider names as its `config_error_type`."""


class StrictProvider(MailProvider):
    config_error_type: ClassVar[type[Exception]] = ConfigError


@dataclass
class Settings:
    mail: Any = None


def test_an_instance_of_the_model_or_a_subclass_is_the_config():
    config = MailConfig(host="smtp")
    assert MailProvider.find_config(config) is config
    secure = SecureMailConfig(host="smtp")
    assert MailProvider.find_config(secure) is secure


def test_the_section_is_read_from_an_attribute_or_a_mapping_key():
    config = MailConfig(host="smtp")
    assert MailProvider.find_config(Settings(mail=config)) is config
    assert MailProvider.find_config({"mail": config}) is config
    assert MailProvider.find_config({"mail": {"host": "smtp", "port": 2525}}) == MailConfig(
        "smtp", 2525
    )
    assert MailProvider.find_config(Settings(mail={"host": "smtp"})) == MailConfig("smtp")


def test_a_mapping_section_goes_through_model_validate_when_the_model_has_it():
    found = ValidatedProvider.find_config({"mail": {"host": "smtp"}})
    assert isinstance(found, ValidatedConfig)
    assert found.host == "SMTP"


def test_no_section_means_no_config():
    assert MailProvider.find_config(None) is None
    assert MailProvider.find_config(Settings()) is None  # attribute set to None
    assert MailProvider.find_config({"other": 1}) is None
    assert MailProvider.find_config(object()) is None
    assert Provider.find_config(MailConfig()) is None  # no config_key, no config_model


def test_without_a_model_the_section_is_returned_as_it_is():
    class Untyped(Provider):
        config_key = "mail"

    section = {"host": "smtp"}
    assert Untyped.find_config({"mail": section}) is section


@pytest.mark.parametrize(
    ("app_config", "where"),
    [
        pytest.param(Settings(mail="smtp://user:secret@host"), "Settings.mail", id="attribute"),
        pytest.param({"mail": ["smtp"]}, "dict['mail']", id="mapping"),
    ],
)
def test_a_section_of_the_wrong_type_fails_with_one_line(app_config: object, where: str):
    with pytest.raises(TypeError) as info:
        MailProvider.find_config(app_config)
    message = str(info.value)
    assert "\n" not in message
    assert f"The application config's {where} is of type " in message
    assert "provider 'mail' expects a MailConfig or a mapping of its settings" in message
    assert "secret" not in message  # the type is named, never the value


def test_the_error_type_is_the_providers_own():
    with pytest.raises(ConfigError, match=r"Settings\.mail is of type int,"):
        StrictProvider.find_config(Settings(mail=3))


async def test_the_application_binds_its_config_for_providers():
    settings = Settings(mail=MailConfig(host="smtp"))
    app = Application(config=settings)
    bound = await app.container.resolve(ApplicationConfig)
    assert bound.value is settings
    assert await app.container.resolve(Settings) is settings  # still under its own type too


async def test_a_provider_reads_its_section_when_the_application_starts():
    provider = MailProvider()
    async with Application.boot(providers=[provider], config={"mail": {"host": "smtp"}}):
        assert provider.found == MailConfig(host="smtp")
    without = MailProvider()
    async with Application.boot(providers=[without]):
        assert without.found is None


async def test_a_wrong_section_fails_the_start():
    with pytest.raises(ApplicationStartError) as info:
        async with Application.boot(providers=[StrictProvider()], config=Settings(mail=3)):
            pass
    assert isinstance(info.value.__cause__, ConfigError)


async def test_a_registrar_that_cannot_resolve_has_no_application_config():
    class RegistrarOnly:
        def singleton(self, *args: Any, **kwargs: Any) -> None: ...
        def transient(self, *args: Any, **kwargs: Any) -> None: ...
        def scoped(self, *args: Any, **kwargs: Any) -> None: ...
        def has(self, service_type: Any) -> bool:
            return False

    provider = MailProvider()
    await provider.register(RegistrarOnly())
    assert provider.found is None
    await provider.register(Container())  # nothing bound: no application config
    assert provider.found is None
