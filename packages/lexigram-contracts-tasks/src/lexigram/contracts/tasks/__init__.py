"""Contracts of lexigram-tasks: protocols, value types, enums and errors.

This distribution is all a third-party backend author depends on. It has no third-party
dependency, and its only I/O is reading the installed distributions' entry points
(`installed_entry_points`), which is how backends are found.
"""

from __future__ import annotations

from lexigram.contracts.tasks._backend_check import backend_problems
from lexigram.contracts.tasks._backend_points import (
    BACKENDS_GROUP,
    URL_SCHEMES_GROUP,
    declared_schemes,
    forget_installed_entry_points,
    installed_entry_points,
    scheme_claims,
)
from lexigram.contracts.tasks._codec import (
    ENVELOPE_VERSION,
    POISON_JOB_NAME,
    decode_job,
    decode_or_poison,
    encode_job,
    make_poison_job,
    mask_url,
    validate_job,
)
from lexigram.contracts.tasks._entry_point_files import (
    DistributionInfo,
    InstalledDistribution,
    InstalledEntryPoint,
    InstalledEntryPoints,
)
from lexigram.contracts.tasks._enums import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    CancelOutcome,
    IdempotencyResultStatus,
    JobStatus,
    OnErrorPolicy,
    Priority,
    ProgressStatus,
    WorkflowStatus,
)
from lexigram.contracts.tasks._errors import (
    CLIENT_CERTIFICATE_REFUSED,
    BackendConflictError,
    BackendConnectionError,
    BackendError,
    BackendImportError,
    BackendNotFoundError,
    DuplicateTaskError,
    QueueFullError,
    TaskCancelledError,
    TaskConfigurationError,
    TaskDecodeError,
    TaskDependencyCycleError,
    TaskError,
    TaskExecutionError,
    TaskNotFoundError,
    TaskQueueError,
    TaskRegistrationError,
    TaskTimeoutError,
    TaskValidationError,
    WorkflowError,
    error_chain,
)
from lexigram.contracts.tasks._foreign_ids import make_renamed_poison_job, printable_job_id
from lexigram.contracts.tasks._ids import new_job_id
from lexigram.contracts.tasks._job_result import JobResult
from lexigram.contracts.tasks._json import json_encoder, json_for_storage, sendable_json
from lexigram.contracts.tasks._lookup import JobLookupProtocol, id_prefix_upper_bound
from lexigram.contracts.tasks._models import (
    DEFAULT_MAX_RETRIES,
    FailureRecord,
    IdempotencyResult,
    Job,
    JobTemplate,
    ProgressInfo,
    ProgressSnapshot,
    StepResult,
    TaskBackendSpec,
    WorkflowResult,
    WorkflowSummary,
)
from lexigram.contracts.tasks._options import (
    nearest_name,
    option_names,
    parse_options,
    require_number,
)
from lexigram.contracts.tasks._progress import snapshot_from_result
from lexigram.contracts.tasks._protocols import (
    MUST_EXIST_OPTION,
    OPTIONAL_BACKEND_ATTRIBUTES,
    OPTIONAL_BACKEND_FACTORIES,
    OPTIONAL_BACKEND_FLAGS,
    OPTIONAL_BACKEND_METHODS,
    BackendLookupProtocol,
    CancellableQueueProtocol,
    ClosableBackendProtocol,
    ConnectionCheckingQueueProtocol,
    LeaseRenewerProtocol,
    LeaseRenewingQueueProtocol,
    TaskBackendProtocol,
    TaskQueueProtocol,
)
from lexigram.contracts.tasks._result import Err, Ok, Result, UnwrapError
from lexigram.contracts.tasks._server_outage import ServerOutage
from lexigram.contracts.tasks._service_protocols import (
    HookRegistryProtocol,
    JobProtocol,
    JobTemplateProtocol,
    ProgressTrackerProtocol,
    TaskExecutorProtocol,
    TaskManagerProtocol,
    TaskWorkerProtocol,
)
from lexigram.contracts.tasks._store_protocols import (
    SCHEDULE_STATE_FIELDS,
    CacheBackendProtocol,
    DLQBackendProtocol,
    DLQProtocol,
    FieldUpdatingSchedulerStoreProtocol,
    IdempotencyStoreProtocol,
    JobRecordingWorkflowRunStoreProtocol,
    ListingWorkflowRunStoreProtocol,
    LockManagerProtocol,
    LockProtocol,
    ProgressStoreProtocol,
    RateLimiterProtocol,
    ResultAcker,
    ResultAckingQueueProtocol,
    ResultStoreProtocol,
    SchedulerStoreProtocol,
    WorkflowRunStoreProtocol,
    WorkflowStateStoreProtocol,
)

__all__ = [
    "CLIENT_CERTIFICATE_REFUSED",
    "DEFAULT_MAX_RETRIES",
    "ENVELOPE_VERSION",
    "MUST_EXIST_OPTION",
    "OPTIONAL_BACKEND_ATTRIBUTES",
    "OPTIONAL_BACKEND_FACTORIES",
    "OPTIONAL_BACKEND_FLAGS",
    "OPTIONAL_BACKEND_METHODS",
    "POISON_JOB_NAME",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "SCHEDULE_STATE_FIELDS",
    "BackendConflictError",
    "BackendConnectionError",
    "BackendError",
    "BackendImportError",
    "BackendLookupProtocol",
    "BackendNotFoundError",
    "CacheBackendProtocol",
    "CancelOutcome",
    "CancellableQueueProtocol",
    "ClosableBackendProtocol",
    "ConnectionCheckingQueueProtocol",
    "DLQBackendProtocol",
    "DLQProtocol",
    "DuplicateTaskError",
    "Err",
    "FailureRecord",
    "FieldUpdatingSchedulerStoreProtocol",
    "HookRegistryProtocol",
    "IdempotencyResult",
    "IdempotencyResultStatus",
    "IdempotencyStoreProtocol",
    "Job",
    "JobLookupProtocol",
    "JobProtocol",
    "JobRecordingWorkflowRunStoreProtocol",
    "JobResult",
    "JobStatus",
    "JobTemplate",
    "JobTemplateProtocol",
    "LeaseRenewerProtocol",
    "LeaseRenewingQueueProtocol",
    "ListingWorkflowRunStoreProtocol",
    "LockManagerProtocol",
    "LockProtocol",
    "Ok",
    "OnErrorPolicy",
    "Priority",
    "ProgressInfo",
    "ProgressSnapshot",
    "ProgressStatus",
    "ProgressStoreProtocol",
    "ProgressTrackerProtocol",
    "QueueFullError",
    "RateLimiterProtocol",
    "Result",
    "ResultAcker",
    "ResultAckingQueueProtocol",
    "ResultStoreProtocol",
    "SchedulerStoreProtocol",
    "StepResult",
    "TaskBackendProtocol",
    "TaskBackendSpec",
    "TaskCancelledError",
    "TaskConfigurationError",
    "TaskDecodeError",
    "TaskDependencyCycleError",
    "TaskError",
    "TaskExecutionError",
    "TaskExecutorProtocol",
    "TaskManagerProtocol",
    "TaskNotFoundError",
    "TaskQueueError",
    "TaskQueueProtocol",
    "TaskRegistrationError",
    "TaskTimeoutError",
    "TaskValidationError",
    "TaskWorkerProtocol",
    "UnwrapError",
    "WorkflowError",
    "WorkflowResult",
    "WorkflowRunStoreProtocol",
    "WorkflowStateStoreProtocol",
    "WorkflowStatus",
    "WorkflowSummary",
    "backend_problems",
    "decode_job",
    "decode_or_poison",
    "encode_job",
    "error_chain",
    "id_prefix_upper_bound",
    "json_encoder",
    "json_for_storage",
    "make_poison_job",
    "make_renamed_poison_job",
    "mask_url",
    "nearest_name",
    "new_job_id",
    "option_names",
    "parse_options",
    "printable_job_id",
    "require_number",
    "sendable_json",
    "validate_job",
]

# Envelope security: signing and the payload size limit (see `configure_envelope`).
from lexigram.contracts.tasks._codec import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    configure_envelope,
    envelope_signer,
    max_payload_bytes,
)
from lexigram.contracts.tasks._security import EnvelopeSigner, key_id

__all__ += [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "EnvelopeSigner",
    "configure_envelope",
    "envelope_signer",
    "key_id",
    "max_payload_bytes",
]

__all__ += ["snapshot_from_result"]

# Where installed backends are found (entry-point groups), for the core and for backends.
__all__ += [
    "BACKENDS_GROUP",
    "URL_SCHEMES_GROUP",
    "DistributionInfo",
    "InstalledDistribution",
    "InstalledEntryPoint",
    "InstalledEntryPoints",
    "declared_schemes",
    "forget_installed_entry_points",
    "installed_entry_points",
    "scheme_claims",
]

# How a backend reports a server it lost and found again.
__all__ += ["ServerOutage"]
