"""The OpenTelemetry API is imported only once spans can be made.

A provider is set through ``opentelemetry.trace``, or named in the environment
(``OTEL_PYTHON_TRACER_PROVIDER``); until one of them happens the tracing code asks for
nothing, so an application that merely has the API installed does not pay its import.
Each check runs a fresh interpreter: this process has imported the API already.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

CHECK = """
import sys
from lexigram.tasks.observability import _tracing

tracer = _tracing._current_tracer()
print("tracer" if tracer is not None else "none", "opentelemetry.trace" in sys.modules)
"""


def _run(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(env)
    return subprocess.run(  # noqa: S603 - this interpreter on a fixed snippet
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    ).stdout.strip()


def test_no_provider_and_no_import_of_the_api_until_the_application_sets_one() -> None:
    assert _run(CHECK) == "none False"


def test_a_provider_the_application_set_is_used() -> None:
    code = textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider())
        """
    )
    assert _run(code + CHECK) == "tracer True"


def test_a_provider_named_in_the_environment_is_loaded_on_first_use() -> None:
    assert _run(CHECK, OTEL_PYTHON_TRACER_PROVIDER="sdk_tracer_provider") == "tracer True"
