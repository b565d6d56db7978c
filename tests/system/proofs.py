"""The proofs' sizes (small in `make test`, the issue's with `pytest tests/system --full-size`),
the stack they run on at full size (Kafka and one model server serving the model archive), and
their report: bench/exactly-once.json (bench/soak.json) and a section of docs/benchmarks.md."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.report import write_block
from benchmarks.suite import MODEL_NAME, load_photos
from geoverdict_common.paths import project_dir, runs_dir
from tests.system.answers import Counts
from tests.system.exactly_once import (
    BEGIN,
    END,
    BrokerRestartRun,
    ExactlyOnceResults,
    FreezeRun,
    KillRun,
    RebalanceRun,
    Target,
)
from tests.system.soak import SoakRun
from tests.system.soak import report as soak_report

SOAK_BEGIN, SOAK_END = "<!-- soak:begin -->", "<!-- soak:end -->"
PHOTOS = 64  # distinct photos cycled through (each event's bytes are made unique anyway)


@dataclass(frozen=True)
class Sizes:
    """How much each proof does: events, kills, the paced proofs' rate, seeds."""

    full: bool
    kill_events: int  # exactly_once
    kills: int
    kill_seed: int
    at_least_once_events: int
    at_least_once_kills: int
    at_least_once_seed: int
    rate: float  # events/s of the paced proofs
    rebalance_events: int
    freeze_events: int
    freeze_seed: int
    restart_events: int
    restart_down_s: float


# `make test`: minutes on the fixture model
SMALL = Sizes(
    full=False,
    kill_events=400,
    kills=3,
    kill_seed=1,
    at_least_once_events=160,
    at_least_once_kills=1,
    at_least_once_seed=2,
    rate=20.0,
    rebalance_events=240,
    freeze_events=200,
    freeze_seed=3,
    restart_events=200,
    restart_down_s=3.0,
)
# `--full-size`: the sizes on the model archive (tens of minutes)
FULL = Sizes(
    full=True,
    kill_events=1000,
    kills=10,
    kill_seed=0,
    at_least_once_events=1000,
    at_least_once_kills=10,
    at_least_once_seed=0,
    rate=40.0,
    rebalance_events=3000,
    freeze_events=1200,
    freeze_seed=0,
    restart_events=1200,
    restart_down_s=5.0,
)


@contextmanager
def proving_ground(model: Path | None, photos: Path | None, model_server: str) -> Iterator[Target]:
    """Kafka and `model_server` serving the archive `model` (default: the newest in
    model_store/) on free ports, run folder .run/system, as a Target; stopped on leaving."""
    from geoverdict.demo.archive import find_archive
    from geoverdict_stack.stack import Stack, StackConfig, sigterm_as_exit

    archive = find_archive(model)
    run_dir = runs_dir() / "system"
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


def report_paths() -> tuple[Path, Path]:
    """Where full-size results go: bench/ and docs/benchmarks.md of the working directory."""
    root = project_dir()
    return root / "bench", root / "docs" / "benchmarks.md"


def write_proofs(results: ExactlyOnceResults, out: Path, docs: Path | None) -> None:
    """`out`/exactly-once.json, and the proofs' section of `docs`."""
    _write(out / "exactly-once.json", results.to_json(), docs, BEGIN, END, report(results))


def write_soak(run: SoakRun, out: Path, docs: Path | None) -> None:
    """`out`/soak.json, and the soak's section of `docs`."""
    _write(out / "soak.json", run.to_json(), docs, SOAK_BEGIN, SOAK_END, soak_report(run))


def _write(
    path: Path, data: dict[str, Any], docs: Path | None, begin: str, end: str, text: str
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    if docs is not None:
        write_block(docs, begin, end, text)


# -- the report ------------------------------------------------------------------------------
def _counted(counts: Counts) -> str:
    return (
        f"{counts.answered}/{counts.events} answered, {counts.missing} missing, "
        f"{counts.duplicates} duplicates"
    )


def kill_line(run: KillRun) -> str:
    aimed = sum(k.moment == "window" for k in run.kills)
    recovery = max((k.recovery_s for k in run.kills), default=0.0)
    return (
        f"kill -9 x{len(run.kills)} ({aimed} inside an open transaction or an unacknowledged "
        f"commit), {run.guarantee}: {_counted(run.counts)}; slowest recovery {recovery:.1f} s"
    )


def rebalance_line(run: RebalanceRun) -> str:
    changes = "; ".join(
        f"{c.label}: settled in {c.settle_s:.1f} s, longest gap between verdicts "
        f"{c.pause_s:.1f} s, worst wait {c.worst_latency_s:.1f} s"
        for c in run.changes
    )
    return (
        f"group 1 -> 3 -> 1 over {run.partitions} partitions at {run.rate:g}/s: "
        f"{_counted(run.counts)}; baseline gap {run.baseline_gap_s:.2f} s; {changes}"
    )


def freeze_line(run: FreezeRun) -> str:
    return (
        f"consumer frozen {run.frozen_s:.1f} s with {len(run.caught)} transaction(s) open: "
        f"taken over in {run.takeover_s:.1f} s, superseded {run.superseded}, fenced "
        f"{run.fenced_metric:.0f} / aborted {run.aborted_metric:.0f} (its metrics), rejoined "
        f"{run.rejoined}, exits {run.exit_a}/{run.exit_b}; "
        f"{_counted(run.counts)}"
    )


def restart_line(run: BrokerRestartRun) -> str:
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
        rows.append((label, guarantee, kill.counts, kill_line(kill)))
    if (r := results.rebalance) is not None:
        label = f"group 1 -> 3 -> 1, {r.events} events"
        rows.append((label, "exactly_once", r.counts, rebalance_line(r)))
    if (f := results.freeze) is not None:
        label = f"frozen consumer, {f.events} events"
        rows.append((label, "exactly_once", f.counts, freeze_line(f)))
    for how, restart in results.broker_restart.items():
        label = f"broker {how}, {restart.events} events"
        rows.append((label, "exactly_once", restart.counts, restart_line(restart)))
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
