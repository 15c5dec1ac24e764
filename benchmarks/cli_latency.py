"""W3 on the documented CLI worker of every framework: enqueue-to-start latency.

The same workers, settings and APP modules as ``cli_bench.py`` (each framework's own
command line as a separate process, concurrency 100, results stored as listed there),
but started on an empty queue and left running (lexigram without ``--burst``). Then:

1. one warm-up job is enqueued and awaited, so start-up is not measured here
   (``cli_bench.py``'s W2/W4 time it);
2. the main process enqueues ``--rate`` jobs per second for ``--seconds`` seconds, one at
   a time, through the framework's own single-enqueue call (the producers of
   ``redis_bench.py``, ``postgres_bench.py`` and ``rabbitmq_bench.py``), each job carrying
   its send time;
3. each job's handler notes ``start - send time`` (the same machine's clock on both
   sides); when the last one ends, the worker's probe writes p50, p99 and the maximum.

Frameworks run interleaved within a run; the table holds the median over ``--runs`` of
each run's percentiles. Nothing is asserted; it prints a table. With ``--stages``, each
run of lexigram on RabbitMQ also prints where its jobs' latency went (``latency_stages.py``).

    benchmarks/.venv-redis/bin/python benchmarks/cli_latency.py redis
    benchmarks/.venv-postgres/bin/python benchmarks/cli_latency.py postgres
    benchmarks/.venv-rabbitmq/bin/python benchmarks/cli_latency.py rabbitmq
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cli_bench

# The W3 probe: `start(ts)` notes the job's latency; a job sent with ts=0 is the warm-up.
PROBE = (
    cli_bench.PROBE_HEAD
    + """_latencies = []
_stages = None
if os.environ.get("CLILATENCY_STAGES"):  # --stages: see latency_stages.py
    import latency_stages as _stages


def start(ts):
    now = time.time()
    if ts > 0:
        _latencies.append(now - ts)
        if _stages is not None:
            _stages.mark(ts, "handler", now)
    else:
        open(OUT + ".ready", "w").close()


def done():
    global _count
    with _lock:
        _count += 1
        if _count != N:
            return
    lat = sorted(_latencies)
    figures = {
        "p50": lat[len(lat) // 2],
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max": lat[-1],
        "count": len(lat),
    }
    with open(OUT + ".tmp", "w") as out:
        json.dump(figures, out)
    if _stages is not None:
        _stages.dump(OUT + ".stages")
    os.replace(OUT + ".tmp", OUT)
"""
)


@dataclass
class Latency:
    """One run's percentiles, in seconds."""

    p50: float
    p99: float
    worst: float


def write_apps(bench: cli_bench.Bench) -> None:
    """cli_bench's APP modules, each handler passing its job's send time to the probe."""
    bench.write_apps()
    for module in bench.app_dir.glob("clibench_*.py"):
        source = module.read_text(encoding="utf-8")
        module.write_text(
            source.replace("clibench_probe.start()", "clibench_probe.start(ts)"), encoding="utf-8"
        )
    (bench.app_dir / "clibench_probe.py").write_text(PROBE, encoding="utf-8")
    stages = Path(__file__).with_name("latency_stages.py").read_text(encoding="utf-8")
    (bench.app_dir / "latency_stages.py").write_text(stages, encoding="utf-8")


class Sender:
    """Sends single `bench(ts)` jobs with the framework's producer of the backend's bench."""

    def __init__(self, backend: str, framework: str, url: str, stores: str | None) -> None:
        self.backend = backend
        self.loop = asyncio.new_event_loop()
        self.producer: Any
        if backend == "postgres":
            import postgres_bench  # noqa: PLC0415

            self.producer = postgres_bench.ADAPTERS[framework](url)
            self.loop.run_until_complete(self.producer.setup())
        else:
            import rabbitmq_bench  # noqa: PLC0415
            import redis_bench  # noqa: PLC0415

            module: Any = redis_bench if backend == "redis" else rabbitmq_bench
            name = framework.split("-", maxsplit=1)[0]
            if backend == "rabbitmq":
                self.producer = module.Producer(name, url, stores)
            else:
                self.producer = module.Producer(name, url)

    async def _one(self, ts: float) -> None:
        if self.backend == "postgres":
            await self.producer.enqueue_one(ts)
        else:
            await self.producer.one(ts)

    def one(self, ts: float) -> None:
        """Send one job now."""
        self._run(self._one(ts))

    def steady(self, rate: float, seconds: float) -> None:
        """Send ``rate * seconds`` jobs at `rate` per second, each stamped when sent."""

        async def send() -> None:
            began = time.perf_counter()
            for index in range(int(rate * seconds)):
                delay = began + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._one(time.time())

        self._run(send())

    def _run(self, coro: Any) -> None:
        if self.backend == "postgres":
            self.loop.run_until_complete(coro)
        else:
            self.producer.run(coro)

    def close(self) -> None:
        """Close the producer's connections."""
        if self.backend == "postgres":
            self.loop.run_until_complete(self.producer.close())
        else:
            self.producer.close()
        self.loop.close()


def _wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path, within: float) -> None:
    deadline = time.time() + within
    while not path.exists():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            msg = f"the worker exited {proc.returncode}:\n{tail}"
            raise RuntimeError(msg)
        if time.time() > deadline:
            msg = f"{path.name} did not appear within {within:.0f} s"
            raise RuntimeError(msg)
        time.sleep(0.01)


def measure(
    bench: cli_bench.Bench, framework: str, rate: float, seconds: float, *, stages: bool = False
) -> Latency:
    """One W3 run of one framework: empty queue, worker up, warm-up, steady stream.

    With `stages` (lexigram on RabbitMQ), also print where its jobs' latency went.
    """
    jobs = int(rate * seconds)
    out = bench.app_dir / "done.json"
    traced = out.with_name("done.json.stages")
    for stale in (out, out.with_name("done.json.ready"), traced):
        stale.unlink(missing_ok=True)
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    if bench.backend == "rabbitmq":
        url, cleanup = bench.fill_rabbitmq(framework, 0)
    elif bench.backend == "postgres":
        url = bench.fill_postgres(framework, 0)
    else:
        url = bench.fill_redis(framework, 0)
    template = [part for part in cli_bench.COMMANDS[bench.backend][framework] if part != "--burst"]
    command = [cli_bench._bin(template[0])]  # noqa: SLF001 - the same lookup as cli_bench's
    command += [part.format(url=url, app_dir=bench.app_dir) for part in template[1:]]
    env = bench.env(url, jobs + 1, 0.0, out)
    if stages and framework.startswith("lexigram") and bench.backend == "rabbitmq":
        env["CLILATENCY_STAGES"] = "1"
    log_path = bench.app_dir / "worker.log"
    sender = Sender(bench.backend, framework, url, bench.rabbitmq_stores(framework))
    try:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(  # noqa: S603 - fixed argument lists
                command, env=env, cwd=bench.app_dir, stdout=log, stderr=log, start_new_session=True
            )
            try:
                sender.one(0.0)  # the warm-up job
                _wait_for(out.with_name("done.json.ready"), proc, log_path, 60)
                sender.steady(rate, seconds)
                _wait_for(out, proc, log_path, 60)
            finally:
                _stop(proc)
        data = json.loads(out.read_text())
        if traced.exists():
            print_stages(json.loads(traced.read_text()))
        return Latency(p50=data["p50"], p99=data["p99"], worst=data["max"])
    finally:
        sender.close()
        cleanup()


STAGES = ("delivered", "taken", "handed", "handler")


def print_stages(traced: dict[str, Any]) -> None:
    """Percentiles of each stage of the run's jobs, and what paused the worker meanwhile."""
    spans: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
    first, last = float("inf"), 0.0
    for key, marks in traced["marks"].items():
        if not all(stage in marks for stage in STAGES):
            continue
        sent = float(key)
        first, last = min(first, sent), max(last, marks["handler"])
        previous = sent
        for stage in STAGES:
            spans[stage].append(marks[stage] - previous)
            previous = marks[stage]
        spans["total"].append(marks["handler"] - sent)

    def pct(values: list[float], share: float) -> float:
        return sorted(values)[min(len(values) - 1, int(len(values) * share))] * 1e3

    print("  stage (ms, from the one before)   p50     p90     p99     max")
    for stage, values in spans.items():
        if values:
            figures = "".join(f"{pct(values, q):8.3f}" for q in (0.5, 0.9, 0.99, 1.0))
            print(f"  {stage:32}{figures}")
    during = [(began, took, gen) for began, took, gen in traced["gc"] if first <= began <= last]
    for generation in (0, 1, 2):
        pauses = [took for _, took, gen in during if gen == generation]
        if pauses:
            print(
                f"  gc generation {generation}: {len(pauses)} pauses, longest "
                f"{max(pauses) * 1e3:.2f} ms, {sum(pauses) * 1e3:.1f} ms in all"
            )
    slow = [took for began, took in traced["slow"] if first <= began <= last]
    longest = f", longest {max(slow) * 1e3:.2f} ms" if slow else ""
    print(f"  event-loop callbacks over 1 ms: {len(slow)}{longest}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> None:
    """Parse the options, run every framework interleaved, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("backend", choices=sorted(cli_bench.COMMANDS))
    parser.add_argument("--rate", type=float, default=500.0, help="jobs/s sent (default 500)")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long (default 6)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frameworks", default="", help="comma-separated subset")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--pg", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    parser.add_argument(
        "--stages",
        action="store_true",
        help="lexigram on RabbitMQ: print where each run's latency went (latency_stages.py)",
    )
    args = parser.parse_args()
    args.jobs = 0  # what cli_bench.Bench reads for W2; unused here
    frameworks = (
        args.frameworks.split(",")
        if args.frameworks
        else list(cli_bench.DEFAULT_FRAMEWORKS[args.backend])
    )
    if args.backend == "postgres":
        import postgres_bench  # noqa: PLC0415

        asyncio.run(postgres_bench.ensure_databases())
    figures: dict[str, list[Latency]] = {}
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="clilatency-") as scratch:
        bench = cli_bench.Bench(args.backend, args, Path(scratch))
        write_apps(bench)
        cli_bench.precompile(bench.app_dir)
        for run in range(1, args.runs + 1):
            for framework in frameworks:
                try:
                    latency = measure(bench, framework, args.rate, args.seconds, stages=args.stages)
                except Exception as error:  # reported, the run goes on
                    print(f"run {run} {framework}: FAILED {error}", flush=True)
                    continue
                figures.setdefault(framework, []).append(latency)
                print(
                    f"run {run} {framework:15} p50 {latency.p50 * 1e3:7.2f} ms  p99 "
                    f"{latency.p99 * 1e3:7.2f} ms  max {latency.worst * 1e3:7.2f} ms"
                    f"  (load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    print(f"versions: {cli_bench.versions(frameworks)}")
    for framework in frameworks:
        print(f"- {framework}: {cli_bench.SETTINGS[framework]}")
    jobs = int(args.rate * args.seconds)
    print(
        f"\n### {args.backend} W3 ({jobs:,} jobs sent one by one at {args.rate:g}/s, "
        f"median of {args.runs})"
    )
    print("| framework | p50 ms | p99 ms | max ms | p99 per run |")
    print("|---|---:|---:|---:|---|")
    for framework in frameworks:
        runs = figures.get(framework, [])
        if not runs:
            print(f"| {framework} | n/a | n/a | n/a | |")
            continue
        p50 = statistics.median(r.p50 for r in runs) * 1e3
        p99 = statistics.median(r.p99 for r in runs) * 1e3
        worst = statistics.median(r.worst for r in runs) * 1e3
        per_run = " / ".join(f"{r.p99 * 1e3:.1f}" for r in runs)
        print(f"| {framework} | {p50:.2f} | {p99:.2f} | {worst:.1f} | {per_run} |")


if __name__ == "__main__":
    main()
