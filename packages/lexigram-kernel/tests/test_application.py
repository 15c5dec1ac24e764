from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from lexigram.app import Application, ApplicationStartError
from lexigram.di import (
    ContainerRegistrarProtocol,
    ContainerResolverProtocol,
    DynamicModule,
    HealthCheckResult,
    HealthStatus,
    Module,
    Provider,
    ProviderPriority,
    ProviderState,
    module,
)


class Recorder:
    """Shared log of lifecycle calls, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []


class RecordingProvider(Provider):
    def __init__(
        self,
        log: Recorder,
        name: str,
        priority: int = ProviderPriority.NORMAL,
        *,
        fail_in: str | None = None,
        health: HealthStatus = HealthStatus.HEALTHY,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, priority=priority, **kwargs)
        self.log = log
        self.fail_in = fail_in
        self.health = health
        self.errors: list[tuple[str, BaseException]] = []
        self.booted = asyncio.Event()

    async def _step(self, phase: str) -> None:
        self.log.events.append(f"{phase}:{self.name}")
        if self.fail_in == phase:
            msg = f"{self.name} broke in {phase}"
            raise RuntimeError(msg)

    async def register(self, container: ContainerRegistrarProtocol) -> None:
        await self._step("register")

    async def boot(self, container: ContainerResolverProtocol) -> None:
        await self._step("boot")
        self.booted.set()

    async def shutdown(self) -> None:
        await self._step("shutdown")

    async def health_check(self, timeout: float = 5.0) -> HealthCheckResult:
        return HealthCheckResult(self.health, component=self.name)

    async def on_error(self, error: BaseException, phase: str) -> None:
        self.errors.append((phase, error))


class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting


class GreeterProvider(Provider):
    priority = ProviderPriority.INFRASTRUCTURE

    async def register(self, container: ContainerRegistrarProtocol) -> None:
        container.singleton(Greeter, Greeter("hello"))


class SendEmailTask:
    def __init__(self, greeter: Greeter) -> None:
        self.greeter = greeter


@module(is_global=True)
class GreeterModule(Module):
    booted: list[str] = []  # noqa: RUF012 - test-only record of hook calls

    @classmethod
    def configure(cls) -> DynamicModule:
        return DynamicModule(module=cls, providers=[GreeterProvider()], is_global=True)

    @classmethod
    async def on_module_booted(cls, container: ContainerResolverProtocol) -> None:
        cls.booted.append("booted")

    @classmethod
    async def on_module_shutdown(cls) -> None:
        cls.booted.append("shutdown")


@pytest.fixture
def log() -> Recorder:
    return Recorder()


async def test_application_registers_all_then_boots_by_priority_and_stops_in_reverse(log):
    app = Application("test")
    app.use(RecordingProvider(log, "normal", ProviderPriority.NORMAL))
    app.add_providers(
        [
            RecordingProvider(log, "low", ProviderPriority.LOW),
            RecordingProvider(log, "critical", ProviderPriority.CRITICAL),
        ]
    )
    await app.start()
    assert app.is_running
    assert [p.name for p in app.providers] == ["critical", "normal", "low"]
    assert all(p.state is ProviderState.BOOTED for p in app.providers)
    await app.stop()
    assert log.events == [
        "register:critical",
        "register:normal",
        "register:low",
        "boot:critical",
        "boot:normal",
        "boot:low",
        "shutdown:low",
        "shutdown:normal",
        "shutdown:critical",
    ]
    assert all(p.state is ProviderState.SHUTDOWN for p in app.providers)


async def test_application_dependencies_boot_before_their_dependents(log):
    app = Application()
    app.add_provider(RecordingProvider(log, "api", ProviderPriority.CRITICAL, dependencies=["db"]))
    app.add_provider(RecordingProvider(log, "db", ProviderPriority.LOW))
    app.add_provider(
        RecordingProvider(log, "web", ProviderPriority.NORMAL, optional_dependencies=["absent"])
    )
    await app.start()
    assert [p.name for p in app.providers] == ["db", "api", "web"]
    await app.stop()


async def test_application_missing_dependency_fails_before_anything_runs(log):
    app = Application()
    app.add_provider(RecordingProvider(log, "api", dependencies=["db"]))
    with pytest.raises(ApplicationStartError, match=r"depends on 'db', which is not among") as info:
        await app.start()
    assert info.value.phase == "order"
    assert log.events == []


async def test_application_dependency_cycle_is_reported(log):
    app = Application()
    app.add_provider(RecordingProvider(log, "a", dependencies=["b"]))
    app.add_provider(RecordingProvider(log, "b", dependencies=["a"]))
    with pytest.raises(ApplicationStartError, match="cycle: 'a' -> 'b' -> 'a'"):
        await app.start()


async def test_application_boot_failure_rolls_back_what_booted(log):
    first = RecordingProvider(log, "first", ProviderPriority.CRITICAL)
    broken = RecordingProvider(log, "broken", ProviderPriority.NORMAL, fail_in="boot")
    never = RecordingProvider(log, "never", ProviderPriority.LOW)
    app = Application()
    app.add_providers([first, broken, never])
    with pytest.raises(ApplicationStartError) as info:
        await app.start()
    assert info.value.provider == "broken"
    assert info.value.phase == "boot"
    assert "Provider 'broken' failed to boot: RuntimeError: broken broke in boot." in str(
        info.value
    )
    assert isinstance(info.value.__cause__, RuntimeError)
    assert log.events[-3:] == ["boot:first", "boot:broken", "shutdown:first"]
    assert "boot:never" not in log.events
    assert broken.errors[0][0] == "boot"
    assert broken.state is ProviderState.FAILED
    assert first.state is ProviderState.SHUTDOWN
    assert not app.is_running
    with pytest.raises(RuntimeError, match="build a new Application"):
        await app.start()


async def test_application_register_failure_stops_before_any_boot(log):
    app = Application()
    app.add_providers(
        [RecordingProvider(log, "ok"), RecordingProvider(log, "bad", fail_in="register")]
    )
    with pytest.raises(ApplicationStartError, match="'bad' failed to register") as info:
        await app.start()
    assert info.value.phase == "register"
    assert not any(event.startswith("boot") for event in log.events)


async def test_application_optional_provider_failure_is_logged_and_skipped(log, caplog):
    app = Application()
    optional = RecordingProvider(log, "optional", fail_in="boot", required=False)
    app.add_providers([optional, RecordingProvider(log, "main")])
    await app.start()
    assert app.is_running
    assert optional.state is ProviderState.FAILED
    assert "Optional provider 'optional' failed to boot; starting without it." in caplog.text
    await app.stop()
    assert "shutdown:optional" not in log.events


async def test_application_boot_timeout_fails_the_start(log):
    class Slow(Provider):
        async def boot(self, container: ContainerResolverProtocol) -> None:
            await asyncio.Event().wait()

    app = Application()
    app.add_providers([RecordingProvider(log, "fast"), Slow(name="slow", boot_timeout=0.01)])
    with pytest.raises(ApplicationStartError, match=r"'slow' did not finish booting within"):
        await app.start()
    assert log.events[-1] == "shutdown:fast"


async def test_application_stop_logs_shutdown_errors_and_is_idempotent(log, caplog):
    app = Application()
    broken = RecordingProvider(log, "broken", ProviderPriority.LOW, fail_in="shutdown")
    app.add_providers([RecordingProvider(log, "ok"), broken])
    await app.stop()  # before start: nothing to do
    await app.start()
    await app.stop()
    await app.stop()
    assert log.events[-2:] == ["shutdown:broken", "shutdown:ok"]
    assert "Provider 'broken' failed to shut down." in caplog.text
    assert broken.errors[0][0] == "shutdown"


async def test_application_boot_context_manager_stops_on_exception(log):
    seen: list[Application] = []

    async def use_app() -> None:
        async with Application.boot(name="ctx", providers=[RecordingProvider(log, "p")]) as app:
            seen.append(app)
            assert app.is_running
            msg = "inside"
            raise ValueError(msg)

    with pytest.raises(ValueError, match="inside"):
        await use_app()
    assert seen[0].name == "ctx"
    assert not seen[0].is_running
    assert log.events[-1] == "shutdown:p"


async def test_application_boot_with_modules_registers_scoped_services():
    GreeterModule.booted.clear()

    @module(imports=[GreeterModule.configure(), GreeterModule.scope(SendEmailTask)])
    class AppModule(Module): ...

    async with Application.boot(modules=[AppModule]) as app:
        task = await app.container.resolve(SendEmailTask)
        assert task.greeter.greeting == "hello"
        assert await app.container.resolve(SendEmailTask) is not task  # transient
        assert GreeterModule.booted == ["booted"]
    assert GreeterModule.booted == ["booted", "shutdown"]


async def test_application_config_is_bound_under_its_type():
    class Config: ...

    config = Config()
    app = Application(config=config)
    assert app.config is config
    assert await app.container.resolve(Config) is config


async def test_application_health_check_aggregates_providers(log):
    app = Application("health")
    assert (await app.health_check()).status is HealthStatus.UNHEALTHY  # not started
    app.add_providers(
        [
            RecordingProvider(log, "db"),
            RecordingProvider(log, "cache", health=HealthStatus.DEGRADED),
        ]
    )
    await app.start()
    result = await app.health_check()
    assert result.status is HealthStatus.DEGRADED
    assert result.component == "health"
    assert set(result.details) == {"db", "cache"}
    assert result.message == "cache is degraded."
    await app.stop()


async def test_application_health_check_counts_errors_and_timeouts_as_unhealthy():
    class Raising(Provider):
        async def health_check(self, timeout: float = 5.0) -> HealthCheckResult:
            msg = "no connection"
            raise ConnectionError(msg)

    class Hanging(Provider):
        async def health_check(self, timeout: float = 5.0) -> HealthCheckResult:
            await asyncio.Event().wait()
            raise AssertionError

    async with Application.boot(providers=[Raising, Hanging]) as app:
        result = await app.health_check(timeout=0.01)
    assert result.status is HealthStatus.UNHEALTHY
    assert "ConnectionError('no connection')" in result.details["Raising"].message
    assert "did not answer within 0.01s" in result.details["Hanging"].message


async def test_application_rejects_changes_after_start_and_bad_entries(log):
    app = Application()
    with pytest.raises(TypeError, match="not a Provider"):
        app.add_provider(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a module"):
        app.add_module(Recorder)
    await app.start()
    with pytest.raises(RuntimeError, match="Cannot add_provider"):
        app.use(RecordingProvider(log, "late"))
    await app.stop()


async def test_application_run_async_stops_on_request(log):
    app = Application()
    provider = RecordingProvider(log, "p")
    app.use(provider)
    runner = asyncio.create_task(app.run_async())
    await provider.booted.wait()
    app.request_stop()
    await runner
    assert log.events == ["register:p", "boot:p", "shutdown:p"]


async def test_application_run_async_stops_on_sigterm(log):
    app = Application()
    provider = RecordingProvider(log, "p")
    app.use(provider)
    runner = asyncio.create_task(app.run_async())
    await provider.booted.wait()
    os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop, not the default action
    await runner
    assert log.events[-1] == "shutdown:p"
    # The handler is removed again afterwards.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


class QuotingProvider(Provider):
    """Fails its boot with a message of two lines holding both kinds of quote."""

    name = "quoting"

    async def register(self, container: Any) -> None:
        return None

    async def boot(self, container: Any) -> None:
        message = "the queue 'jobs' said \"no\"\nretry later"
        raise RuntimeError(message)


async def test_a_boot_failure_reads_as_written_on_one_line() -> None:
    app = Application()
    app.add_provider(QuotingProvider())
    with pytest.raises(ApplicationStartError) as info:
        await app.start()
    assert str(info.value) == (
        "Provider 'quoting' failed to boot: RuntimeError: the queue 'jobs' said \"no\" retry "
        "later. See the chained exception."
    )
