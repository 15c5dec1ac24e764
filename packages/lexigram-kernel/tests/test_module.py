from __future__ import annotations

import pytest

from lexigram.di import (
    DynamicModule,
    Module,
    ModuleDuplicateError,
    Provider,
    compile_modules,
    is_module,
    module,
)


class QueueProvider(Provider):
    name = "queue"

    def __init__(self, url: str = "memory://") -> None:
        super().__init__()
        self.url = url


class NeedsArgsProvider(Provider):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


class SendEmailTask: ...


class GenerateReportTask: ...


@module(is_global=True, exports=[QueueProvider])
class TasksLikeModule(Module):
    @classmethod
    def configure(cls, url: str = "memory://") -> DynamicModule:
        return DynamicModule(module=cls, providers=[QueueProvider(url)], is_global=True)


@module(providers=[QueueProvider])
class SharedModule(Module): ...


@module(imports=[SharedModule], providers=[SendEmailTask])
class FeatureModule(Module): ...


@module(imports=[FeatureModule, SharedModule])
class AppModule(Module): ...


def test_module_decorator_sets_the_declaration():
    assert is_module(TasksLikeModule)
    assert TasksLikeModule.is_global is True
    assert tuple(TasksLikeModule.exports) == (QueueProvider,)
    assert tuple(FeatureModule.imports) == (SharedModule,)


def test_module_decorator_works_bare_and_on_plain_classes():
    @module
    class Bare: ...

    assert is_module(Bare)
    assert not is_module(SendEmailTask)
    graph = compile_modules([Bare])
    assert [m.name for m in graph.modules] == ["Bare"]


def test_module_graph_walks_imports_before_importers_and_dedups():
    graph = compile_modules([AppModule])
    assert [m.token for m in graph.modules] == [SharedModule, FeatureModule, AppModule]
    assert len(graph.providers) == 1  # SharedModule imported twice, its provider built once
    assert isinstance(graph.providers[0], QueueProvider)
    assert graph.services == (SendEmailTask,)
    assert graph.modules[2].imports == (FeatureModule, SharedModule)


def test_module_graph_merges_dynamic_module_arguments():
    dynamic = TasksLikeModule.configure(url="redis://x")

    @module(imports=[dynamic])
    class Root(Module): ...

    graph = compile_modules([Root])
    (tasks,) = [m for m in graph.modules if m.token is TasksLikeModule]
    assert tasks.is_global
    assert tasks.exports == (QueueProvider,)
    assert [p.url for p in tasks.providers] == ["redis://x"]  # type: ignore[attr-defined]


def test_module_graph_same_dynamic_module_twice_is_kept_once():
    dynamic = TasksLikeModule.configure()
    graph = compile_modules([dynamic, dynamic, TasksLikeModule])
    assert len(graph.modules) == 1
    assert len(graph.providers) == 1


def test_module_graph_plain_class_then_dynamic_adds_the_arguments():
    graph = compile_modules([TasksLikeModule, TasksLikeModule.configure(url="later://")])
    assert [p.url for p in graph.providers] == ["later://"]  # type: ignore[attr-defined]


def test_module_graph_two_configures_of_one_module_collide():
    @module(imports=[TasksLikeModule.configure()])
    class First(Module): ...

    with pytest.raises(ModuleDuplicateError) as info:
        compile_modules([First, TasksLikeModule.configure()])
    assert info.value.module is TasksLikeModule
    message = str(info.value)
    assert "Module `TasksLikeModule` is configured twice" in message
    assert "module `First`" in message
    assert "scope()" in message


def test_module_scope_uses_an_anonymous_token_that_coexists_with_configure():
    scoped = TasksLikeModule.scope(SendEmailTask, GenerateReportTask)
    assert scoped.module is not TasksLikeModule
    assert issubclass(scoped.module, TasksLikeModule)

    @module(imports=[TasksLikeModule.configure(), scoped, TasksLikeModule.scope(SendEmailTask)])
    class Feature(Module): ...

    graph = compile_modules([Feature])
    assert graph.services == (SendEmailTask, GenerateReportTask)
    # The anonymous token declares nothing of its own: the queue provider is not duplicated.
    assert len(graph.providers) == 1
    (scope_module,) = [m for m in graph.modules if m.token is scoped.module]
    assert scope_module.name == "TasksLikeModule.scope"
    assert scope_module.exports == ()
    assert not scope_module.is_global


def test_module_provider_entries_accept_instances_classes_and_services():
    instance = QueueProvider("a")
    graph = compile_modules(
        [DynamicModule(module=SharedModule, providers=[instance, QueueProvider, SendEmailTask])]
    )
    # SharedModule's own QueueProvider class entry and the dynamic one are the same class.
    assert graph.providers[0].__class__ is QueueProvider
    assert instance in graph.providers
    assert graph.services == (SendEmailTask,)


def test_module_provider_class_needing_arguments_is_explained():
    with pytest.raises(TypeError, match=r"cannot be built without arguments.*List an instance"):
        compile_modules([DynamicModule(module=SharedModule, providers=[NeedsArgsProvider])])


def test_module_listed_as_provider_is_rejected():
    with pytest.raises(TypeError, match=r"it is a module\. Move it to imports"):
        compile_modules([DynamicModule(module=AppModule, providers=[SharedModule])])


def test_module_import_of_a_non_module_is_rejected():
    with pytest.raises(TypeError, match="is not a module"):
        compile_modules([DynamicModule(module=AppModule, imports=[SendEmailTask])])


def test_module_bad_provider_entry_is_rejected():
    with pytest.raises(TypeError, match="neither a Provider nor a class"):
        compile_modules([DynamicModule(module=AppModule, providers=["queue"])])


def test_module_import_cycle_is_allowed():
    @module
    class A(Module): ...

    @module(imports=[A])
    class B(Module): ...

    A.imports = (B,)
    graph = compile_modules([A])
    assert {m.token for m in graph.modules} == {A, B}


def test_module_base_configure_raises_type_error():
    with pytest.raises(TypeError, match="has no configure"):
        SharedModule.configure()


def test_module_base_stub_is_the_module_itself():
    stub = SharedModule.stub()
    assert stub.module is SharedModule
    assert len(compile_modules([stub]).providers) == 1


def test_module_require_stub_demands_a_stub():
    with pytest.raises(TypeError, match="defines no stub"):

        @module(require_stub=True)
        class NoStub(Module): ...

    @module(require_stub=True)
    class WithStub(Module):
        @classmethod
        def stub(cls) -> DynamicModule:
            return DynamicModule(module=cls)

    assert WithStub.require_stub


def test_module_scan_is_refused():
    with pytest.raises(TypeError, match="does no package scanning"):

        @module(scan=["my.package"])
        class Scanned(Module): ...
