"""Task backends: found through entry points, built from specs, addressed by URLs, registered.

One module per concern, each small enough to read whole:

* `_entry_points`: discovery (`available_backends`, `load_backend`, scheme lookup), the
  messages about a backend that is missing or broken, and the process's cache of loaded
  backends (`clear_backend_cache`);
* `_building`: queues and stores built from a `TaskBackendSpec`, and closing a backend;
* `_urls`: a configuration's URL, its scheme and the spec built from a config model;
* `_registry`: `TaskBackendRegistry`, backends registered in code in front of the entry
  points;
* `_probe`: the start-up connection check the command line and `TaskProvider.boot` both
  make (`probe`; `probe_all` for several backends at once), and the backend's own
  deadlines for a first answer it waits past.

Imports between them run one way (`_building`, `_urls` and `_probe` on `_entry_points`,
`_registry` on the first three), so none of them sees another half-initialised. This
module only re-exports the names the rest of lexigram-tasks, its tests and tools import from
``lexigram.tasks._backends``, which is what they keep importing. A test that replaces a
module global must replace it in the module that looks it up (``installed_entry_points``
in `_entry_points`): setting it here would change nothing the code reads.
"""

from __future__ import annotations

from lexigram.contracts.tasks import BACKENDS_GROUP
from lexigram.tasks._backends._building import (
    IN_MEMORY,
    INSTALLED,
    close_backend,
    create_queue,
    create_store,
)
from lexigram.tasks._backends._entry_points import (
    _cache as _cache,  # tests read (and seed) the cache of loaded backends through here
)
from lexigram.tasks._backends._entry_points import (
    _FunctionBackend as _FunctionBackend,  # tests build a loaded backend's stand-in with it
)
from lexigram.tasks._backends._entry_points import (
    adopt_backend,
    available_backends,
    backend_attribute,
    backend_for_scheme,
    clear_backend_cache,
    install_hint,
    known_schemes,
    load_backend,
    missing_backend_fix,
)
from lexigram.tasks._backends._probe import (
    COMMAND_LINE,
    OUTER_DEADLINE_MARGIN,
    ProbeWords,
    QueueCheck,
    first_answer_options,
    outer_deadline,
    own_deadline,
    probe,
    probe_all,
    quiet_logging,
    with_connect_timeout,
)
from lexigram.tasks._backends._registry import (
    QueueFactory,
    TaskBackendRegistry,
    is_process_local,
    release_backends,
    url_required,
)
from lexigram.tasks._backends._urls import (
    backend_type_of,
    check_url_syntax,
    config_path_of,
    entry_path,
    shown_url,
    spec_from_config,
    url_of,
)
from lexigram.tasks.constants import DEFAULT_CONNECT_TIMEOUT  # the least `probe` waits

__all__ = [
    "BACKENDS_GROUP",
    "COMMAND_LINE",
    "DEFAULT_CONNECT_TIMEOUT",
    "INSTALLED",
    "IN_MEMORY",
    "OUTER_DEADLINE_MARGIN",
    "ProbeWords",
    "QueueCheck",
    "QueueFactory",
    "TaskBackendRegistry",
    "adopt_backend",
    "available_backends",
    "backend_attribute",
    "backend_for_scheme",
    "backend_type_of",
    "check_url_syntax",
    "clear_backend_cache",
    "close_backend",
    "config_path_of",
    "create_queue",
    "create_store",
    "entry_path",
    "first_answer_options",
    "install_hint",
    "is_process_local",
    "known_schemes",
    "load_backend",
    "missing_backend_fix",
    "outer_deadline",
    "own_deadline",
    "probe",
    "probe_all",
    "quiet_logging",
    "release_backends",
    "shown_url",
    "spec_from_config",
    "url_of",
    "url_required",
    "with_connect_timeout",
]
