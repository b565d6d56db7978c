"""`geoverdict bench exactly-once` and `geoverdict bench soak`: the proofs of exactly_once.py
and the soak on a stack of their own (Kafka and one model server serving the model archive),
their results in bench/exactly-once.json (bench/soak.json) and docs/benchmarks.md."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoverdict.bench.answers import Counts
from geoverdict.bench.exactly_once import (
    BEGIN,
    END,
    GUARANTEES,
    BrokerRestartRun,
    ExactlyOnceResults,
    FreezeRun,
    KillRun,
    RebalanceRun,
    Target,
    broker_restart_run,
    freeze_run,
    kill_run,
    rebalance_run,
)
from geoverdict.bench.exceptions import BenchError
from geoverdict.bench.report import write_block
from geoverdict.bench.soak import SoakRun, soak_run
from geoverdict.bench.soak import report as soak_report
from geoverdict.bench.suite import MODEL_NAME, load_photos
from geoverdict_common.paths import project_dir, runs_dir

PROOFS = ("kill", "rebalance", "freeze", "broker-restart")
SOAK_BEGIN, SOAK_END = "<!-- soak:begin -->", "<!-- soak:end -->"
PHOTOS = 64  # distinct photos cycled through (each event's bytes are made unique anyway)


def default_docs() -> Path:
    """docs/benchmarks.md, where the results are written unless told otherwise."""
    return project_dir() / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class ProofOptions:
    """Which proofs, at which sizes (the issue's by default), against which model server."""

    proofs: tuple[str, ...] = PROOFS
    model: Path | None = None
    photos: Path | None = None
    model_server: str = "torchserve"
    kill_events: int = 1000
    kills: int = 10
    rebalance_events: int = 3000
    rate: float = 40.0  # events/s of the paced proofs
    freeze_events: int = 1200
    restart_events: int = 1200
    seed: int = 0
    out: Path = field(default_factory=lambda: project_dir() / "bench")
    docs: Path | None = field(default_factory=default_docs)

    def __post_init__(self) -> None:
        unknown = set(self.proofs) - set(PROOFS)
        if unknown:
            raise BenchError(f"unknown proof(s) {sorted(unknown)}; choose from {PROOFS}")
        if self.model_server not in ("torchserve", "triton"):
            raise BenchError(f"model server must be torchserve or triton, not {self.model_server}")


@contextmanager
def proving_ground(
    model: Path | None, photos: Path | None, model_server: str, name: str
) -> Iterator[Target]:
    """Kafka and `model_server` serving the archive `model` on free ports (run folder
    .run/`name`), as a Target; stopped on leaving."""
    from geoverdict.demo.archive import find_archive  # noqa: PLC0415
    from geoverdict_stack.stack import Stack, StackConfig, sigterm_as_exit  # noqa: PLC0415

    archive = find_archive(model)
    run_dir = runs_dir() / name
    config = StackConfig.with_free_ports(
        run_dir=run_dir,
        services=("kafka", model_server),
        model_store=archive.parent,
        models=(f"{MODEL_NAME}={archive.name}",),
    )
    print(f"starting Kafka and {model_server} serving {archive.name} in {run_dir}", flush=True)
    with sigterm_as_exit(), Stack(config) as stack:
        server = {
            k: v
            for k, v in stack.client_environment().items()
            if k.startswith(("GEOVERDICT_TORCHSERVE_", "GEOVERDICT_TRITON_", "GEOVERDICT_MODEL_"))
        }
        yield Target(stack.kafka_bootstrap, server, load_photos(photos, PHOTOS), run_dir / "logs")


def run(options: ProofOptions) -> ExactlyOnceResults:
    """Run the chosen proofs one after another, printing each as it ends; write the results."""
    results = ExactlyOnceResults(model=options.model_server)
    started = time.monotonic()
    with proving_ground(options.model, options.photos, options.model_server, "exactly-once") as t:
        for name in options.proofs:
            try:
                _prove(name, t, options, results)
            except BenchError as exc:  # the others still run; the report says which failed
                results.failed[name] = str(exc)
                print(f"{name}: could not be run: {exc}", flush=True)
    print(f"proofs done in {time.monotonic() - started:.0f} s", flush=True)
    _write(
        options.out / "exactly-once.json",
        results.to_json(),
        options.docs,
        BEGIN,
        END,
        report(results),
    )
    return results


def _prove(name: str, t: Target, options: ProofOptions, results: ExactlyOnceResults) -> None:
    """Run the proof `name`, add it to `results` and print its line."""
    if name == "kill":
        for guarantee in GUARANTEES:
            kill = kill_run(t, guarantee, options.kill_events, options.kills, seed=options.seed)
            results.kill[guarantee] = kill
            print(_kill_line(kill), flush=True)
    elif name == "rebalance":
        results.rebalance = rebalance_run(t, options.rebalance_events, options.rate)
        print(_rebalance_line(results.rebalance), flush=True)
    elif name == "freeze":
        results.freeze = freeze_run(t, options.freeze_events, options.rate, seed=options.seed)
        print(_freeze_line(results.freeze), flush=True)
    else:
        for how in ("SIGTERM", "SIGKILL"):
            restart = broker_restart_run(t, how, options.restart_events, options.rate)
            results.broker_restart[how] = restart
            print(_restart_line(restart), flush=True)


def soak(
    duration_s: float,
    rate: float,
    model: Path | None = None,
    photos: Path | None = None,
    model_server: str = "torchserve",
    window_s: float = 300.0,
    out: Path | None = None,
    docs: Path | None = None,
) -> SoakRun:
    """The soak on a stack of its own; results in `out`/soak.json and `docs`."""
    with proving_ground(model, photos, model_server, "soak") as target:
        result = soak_run(target, duration_s, rate, window_s)
    text = soak_report(result)
    print(text, flush=True)
    _write(
        (out or project_dir() / "bench") / "soak.json",
        result.to_json(),
        docs,
        SOAK_BEGIN,
        SOAK_END,
        text,
    )
    return result


def _write(
    path: Path, data: dict[str, Any], docs: Path | None, begin: str, end: str, text: str
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    if docs is not None:
        write_block(docs, begin, end, text)
    print(f"results in {path}" + (f" and {docs}" if docs else ""), flush=True)


# -- the report ------------------------------------------------------------------------------
def _counted(counts: Counts) -> str:
    return (
        f"{counts.answered}/{counts.events} answered, {counts.missing} missing, "
        f"{counts.duplicates} duplicates"
    )


def _kill_line(run: KillRun) -> str:
    aimed = sum(k.moment == "window" for k in run.kills)
    recovery = max((k.recovery_s for k in run.kills), default=0.0)
    return (
        f"kill -9 x{len(run.kills)} ({aimed} inside an open transaction or an unacknowledged "
        f"commit), {run.guarantee}: {_counted(run.counts)}; slowest recovery {recovery:.1f} s"
    )


def _rebalance_line(run: RebalanceRun) -> str:
    changes = "; ".join(
        f"{c.label}: settled in {c.settle_s:.1f} s, longest gap between verdicts "
        f"{c.pause_s:.1f} s, worst wait {c.worst_latency_s:.1f} s"
        for c in run.changes
    )
    return (
        f"group 1 -> 3 -> 1 over {run.partitions} partitions at {run.rate:g}/s: "
        f"{_counted(run.counts)}; baseline gap {run.baseline_gap_s:.2f} s; {changes}"
    )


def _freeze_line(run: FreezeRun) -> str:
    return (
        f"consumer frozen {run.frozen_s:.1f} s with {len(run.caught)} transaction(s) open: "
        f"taken over in {run.takeover_s:.1f} s, superseded {run.superseded}, fenced logged "
        f"{run.fenced_logged}, rejoined {run.rejoined}, exits {run.exit_a}/{run.exit_b}; "
        f"{_counted(run.counts)}"
    )


def _restart_line(run: BrokerRestartRun) -> str:
    recovery = "did not recover" if run.recovery_s is None else f"recovered {run.recovery_s:.1f} s"
    return (
        f"broker {run.signal} with {run.open_at_stop} transaction(s) open, down "
        f"{run.down_s:.1f} s: consumer {recovery} after it was back, "
        f"{run.aborted_metric:.0f} aborted; {_counted(run.counts)}"
    )


def report(results: ExactlyOnceResults) -> str:
    """The proofs as markdown: one row each."""
    rows: list[tuple[str, str, Counts, str]] = []  # proof, guarantee, counts, what happened
    for guarantee, kill in results.kill.items():
        label = f"kill -9 x{len(kill.kills)}, {kill.events} events"
        rows.append((label, guarantee, kill.counts, _kill_line(kill)))
    if (r := results.rebalance) is not None:
        label = f"group 1 -> 3 -> 1, {r.events} events"
        rows.append((label, "exactly_once", r.counts, _rebalance_line(r)))
    if (f := results.freeze) is not None:
        label = f"frozen consumer, {f.events} events"
        rows.append((label, "exactly_once", f.counts, _freeze_line(f)))
    for how, restart in results.broker_restart.items():
        label = f"broker {how}, {restart.events} events"
        rows.append((label, "exactly_once", restart.counts, _restart_line(restart)))
    lines = [
        f"Proofs on the local stack ({results.model}), answers counted per event id by kcat "
        "read_committed.",
        "",
        "| proof | guarantee | missing | duplicates | what happened |",
        "|---|---|---:|---:|---|",
    ]
    lines += [
        f"| {label} | {guarantee} | {c.missing} | {c.duplicates} | {text} |"
        for label, guarantee, c, text in rows
    ]
    lines += [f"| {name} | | | | could not be run: {why} |" for name, why in results.failed.items()]
    return "\n".join(lines)
