"""RabbitMQ backend of lexigram-tasks (aio-pika).

`RabbitMQTaskQueue` implements `TaskQueueProtocol` on AMQP 0-9-1 with publisher
confirms, manual acks, leases with fencing tokens, priorities, delays and
dead-lettering. The ``rabbitmq`` entry point (group ``lexigram.tasks.backends``) names
`backend`, which serves ``amqp://`` and ``amqps://`` URLs and reads `RabbitMQOptions`.
Where AMQP differs from the other backends is documented in ``docs/backends/rabbitmq.md``.

Example:
    from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue

    queue = RabbitMQTaskQueue("amqp://guest:guest@localhost:5672/", "emails")
"""

from __future__ import annotations

from lexigram.tasks.backends.rabbitmq._backend import RabbitMQBackend, backend, create_queue
from lexigram.tasks.backends.rabbitmq._options import RabbitMQOptions, map_priority
from lexigram.tasks.backends.rabbitmq._queue import RabbitMQTaskQueue
from lexigram.tasks.backends.rabbitmq._state import LocalStateStore

__all__ = [
    "LocalStateStore",
    "RabbitMQBackend",
    "RabbitMQOptions",
    "RabbitMQTaskQueue",
    "backend",
    "create_queue",
    "map_priority",
]
