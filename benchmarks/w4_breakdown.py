"""Where the documented CLI worker's W4 time goes, from process start to the last job.

Fills the queue as ``cli_bench.py`` does (2,000 jobs of ``sleep(0.05)`` by default), then
starts ``lexigram-tasks worker APP --concurrency 100 --burst`` through this script, which
marks milestones in the worker process itself (milliseconds after the launcher's clock
started, just before the process was spawned):

* interpreter up (with this script's own imports: asyncio, which the worker needs anyway,
  argparse, subprocess, tempfile; a bare interpreter is up in about 10 ms), the command
  line imported, the worker path imported (APP, config, engine, runtime), the installed
  backends imported (this script times their ``dequeue_batch``, so it imports them before
  the command does: their clients' import time shows here, not at "backend resolved"),
  the APP loaded, the config read, the backend resolved, the runtime started, its
  connection probe, each of the first three ``dequeue_batch`` calls, the first job's
  start and the last job's end;
* the worker's CPU time (user + sys) at the first and at the last job's end;
* the fill of the slots while running: each job's run (start to end, i.e. the sleep and
  its timer's lateness) and the gap between the i-th job's end and the (i + 100)-th
  job's start (how long a slot stays empty before its next job runs);
* how the waves add up: the time over which the first 100 jobs started, the time over
  which the last 100 ended, and what each wave took beyond the shortest run (the slot
  gaps and timer lateness of the slowest slot, averaged over the waves).

Usage (the environment of the backend, as for ``cli_bench.py``)::

    benchmarks/.venv-redis/bin/python benchmarks/w4_breakdown.py redis
    benchmarks/.venv-postgres/bin/python benchmarks/w4_breakdown.py postgres --pg URL
    benchmarks/.venv-rabbitmq/bin/python benchmarks/w4_breakdown.py rabbitmq --amqp URL

Options: ``--jobs`` ``--sleep`` ``--runs`` ``--redis`` ``--pg`` ``--amqp`` (as for
``cli_bench.py``). Nothing here is asserted; it prints one block per run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CHILD = "_child"
SHOWN_DEQUEUES = 3  # the first batches: the start-up fill and the first refills


def launch(args: argparse.Namespace) -> None:
    """Fill the queue like cli_bench, then run this script as the worker, once per run."""
    import cli_bench  # noqa: PLC0415

    if args.backend == "postgres":
        import postgres_bench  # noqa: PLC0415

        postgres_bench.ADMIN_DSN[0] = args.pg
        asyncio.run(postgres_bench.ensure_databases())
    with tempfile.TemporaryDirectory(prefix="w4-breakdown-") as scratch:
        bench = cli_bench.Bench(args.backend, args, Path(scratch))
        bench.write_apps()
        cli_bench.precompile(bench.app_dir)
        for run in range(1, args.runs + 1):
            print(f"## {args.backend} run {run} (load {os.getloadavg()[0]:.2f})", flush=True)
            out = bench.app_dir / "done.json"
            out.unlink(missing_ok=True)
            if args.backend == "rabbitmq":
                url, cleanup = bench.fill_rabbitmq("lexigram", args.jobs)
            else:
                fill = {"redis": bench.fill_redis, "postgres": bench.fill_postgres}
                url, cleanup = fill[args.backend]("lexigram", args.jobs), lambda: None
            template = cli_bench.COMMANDS[args.backend]["lexigram"]
            options = [part.format(url=url, app_dir=bench.app_dir) for part in template[1:]]
            env = bench.env(url, args.jobs, args.sleep, out)
            env["W4_BREAKDOWN_T0"] = repr(time.time())
            try:
                subprocess.run(  # noqa: S603 - this interpreter and this script
                    [sys.executable, __file__, CHILD, *options],
                    env=env,
                    cwd=bench.app_dir,
                    stderr=subprocess.DEVNULL,  # the worker's log; the report is on stdout
                    check=False,
                    timeout=120,
                )
            finally:
                cleanup()


# ------------------------------------------------------------------- the worker side


class Marks:
    """Milestones of one worker process, in ms after the launcher's clock started."""

    def __init__(self) -> None:
        self.t0 = float(os.environ["W4_BREAKDOWN_T0"])
        self.rows: list[tuple[float, str]] = []

    def __call__(self, what: str) -> None:
        """Note that `what` happened now."""
        self.rows.append((1000 * (time.time() - self.t0), what))


def _wrap_async(owner: Any, name: str, before: Any, after: Any) -> None:
    original = getattr(owner, name)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        before(args, kwargs)
        value = await original(*args, **kwargs)
        after(value)
        return value

    setattr(owner, name, wrapped)


def _cpu_ms() -> float:
    times = os.times()
    return 1000 * (times.user + times.system)


def child(argv: list[str]) -> None:  # noqa: C901, PLR0915 - one instrumented run, in order
    """Run the worker command in this process with the milestones and the probes."""
    import importlib  # noqa: PLC0415

    mark = Marks()
    mark("interpreter up (and asyncio, argparse, subprocess imported)")
    cli = importlib.import_module("lexigram.tasks.cli")
    mark("command line imported")
    worker_run = importlib.import_module("lexigram.tasks.cli._worker_run")
    runtime = importlib.import_module("lexigram.tasks.cli._runtime")
    mark("worker path imported (APP types, config, engine, runtime)")
    for name, label in (
        ("load_app", "APP loaded"),
        ("read_config", "config read"),
        ("resolve_spec", "backend resolved"),
    ):
        original = getattr(worker_run, name)

        def timed(*args: Any, _original: Any = original, _label: str = label, **kw: Any) -> Any:
            value = _original(*args, **kw)
            mark(_label)
            return value

        setattr(worker_run, name, timed)
    _wrap_async(
        runtime, "probe_all", lambda a, k: mark("probe begins"), lambda v: mark("probe ends")
    )
    _wrap_async(
        runtime.WorkerRuntime,
        "start",
        lambda a, k: mark("runtime start begins"),
        lambda v: mark("runtime start ends"),
    )
    calls = [0]
    for module, cls in (
        ("lexigram.tasks.backends.redis._queue", "RedisTaskQueue"),
        ("lexigram.tasks.backends.postgres._queue", "PostgresTaskQueue"),
        ("lexigram.tasks.backends.rabbitmq._queue", "RabbitMQTaskQueue"),
    ):
        try:
            owner = getattr(importlib.import_module(module), cls)
        except ImportError:
            continue

        def begin(args: Any, kwargs: Any) -> None:
            calls[0] += 1
            if calls[0] <= SHOWN_DEQUEUES:
                mark(f"dequeue_batch #{calls[0]} ({args[1]} wanted) begins")

        def end(jobs: Any) -> None:
            if calls[0] <= SHOWN_DEQUEUES:
                mark(f"dequeue_batch #{calls[0]} ends ({len(jobs)} jobs)")

        _wrap_async(owner, "dequeue_batch", begin, end)
    # Those imports are the backends' clients, which the command itself would import when
    # it resolves its backend: marked here so that they are not counted as the APP's load.
    mark("installed backends imported (to time their dequeue_batch)")

    probe = importlib.import_module("clibench_probe")
    starts: list[float] = []
    ends: list[float] = []
    cpu: list[float] = []
    probe_start, probe_done = probe.start, probe.done

    def start() -> None:
        if not starts:
            mark("first job starts")
        starts.append(time.perf_counter())
        probe_start()

    def done() -> None:
        ends.append(time.perf_counter())
        probe_done()
        if len(ends) == 1:
            cpu.append(_cpu_ms())
        if len(ends) == probe.N:
            mark("last job ends")
            cpu.append(_cpu_ms())
            report(mark, starts, ends, cpu)

    probe.start, probe.done = start, done
    sys.argv = ["lexigram-tasks", *argv]
    cli.main()


def report(mark: Marks, starts: list[float], ends: list[float], cpu: list[float]) -> None:
    """Print the milestones, the CPU time and the slots' fill."""
    for at, what in mark.rows:
        print(f"{at:8.1f} ms  {what}", flush=True)
    jobs = len(ends)
    per_job = 1000 * (cpu[1] - cpu[0]) / max(1, jobs - 1)
    print(f"cpu: {cpu[0]:.0f} ms at the first job's end, {cpu[1]:.0f} ms at the last's", end="")
    print(f" ({per_job:.0f} us per job between them)")
    began, finished = sorted(starts), sorted(ends)
    runs = sorted(end - start for start, end in zip(began, finished, strict=True))
    slots = 100
    gaps = sorted(began[i + slots] - finished[i] for i in range(jobs - slots))

    def pick(values: list[float], share: float) -> float:
        return 1000 * values[int(share * (len(values) - 1))]

    print(f"job run: median {pick(runs, 0.5):.2f} ms, p90 {pick(runs, 0.9):.2f} ms")
    if jobs > slots:
        first_wave = 1000 * (began[slots - 1] - began[0])
        last_wave = 1000 * (finished[-1] - finished[-slots])
        waves = jobs / slots
        beyond = (1000 * (finished[-1] - began[0]) - first_wave) / waves - 1000 * min(runs)
        print(
            f"waves: the first {slots} jobs started over {first_wave:.2f} ms, the last {slots} "
            f"ended over {last_wave:.2f} ms; each of the {waves:.0f} waves took {beyond:.2f} ms "
            "more than the shortest run",
            flush=True,
        )
    if gaps:
        mean = 1000 * sum(gaps) / len(gaps)
        print(
            f"slot gap (i-th end to (i+{slots})-th start): p10 {pick(gaps, 0.1):.2f} ms, "
            f"median {pick(gaps, 0.5):.2f} ms, p90 {pick(gaps, 0.9):.2f} ms, mean {mean:.2f} ms",
            flush=True,
        )


def main() -> None:
    """Parse the options; launch the runs, or be the worker of one."""
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("backend", choices=("redis", "postgres", "rabbitmq"))
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--pg", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    launch(parser.parse_args())


if __name__ == "__main__":
    main()
