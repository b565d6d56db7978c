"""`geoverdict bench [partitioning]`: run the benchmarks and write their numbers."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from geoverdict.bench.exceptions import BenchError

# The CLI prints these as one line and exits 2.
USER_ERRORS: tuple[type[Exception], ...] = (BenchError,)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `bench` command; without a benchmark name it runs them all."""
    bench = subparsers.add_parser(
        "bench",
        allow_abbrev=False,  # `--n` of a sub-benchmark must not read as `--naive-events`
        help="run the benchmarks",
        description="Without a benchmark name: the whole suite (raw, handler, torchserve, "
        "pipeline, cached, naive, Triton beside TorchServe, partitioning) into "
        "bench/results.json, bench/throughput.png and docs/benchmarks.md. With --device: the "
        "model, the handler and training on that device only (no Java, no Kafka) into "
        "bench/results-gpu.json and the GPU section of docs/benchmarks.md.",
    )
    bench.add_argument("--model", type=Path, help="model archive (default: model_store/*.mar)")
    bench.add_argument("--photos", type=Path, help="photos folder (default: the dev photos)")
    bench.add_argument("--events", type=_positive_int, default=600, help="events per stream run")
    bench.add_argument("--batch-size", type=_positive_int, default=4, help="TorchServe batch size")
    bench.add_argument(
        "--batch-sizes",
        type=_positive_int,
        nargs="+",
        help="batch sizes for the raw (and TorchServe) sweeps (default 1 4 8 16; with "
        "--device 32 64 128 256 512)",
    )
    bench.add_argument(
        "--concurrency",
        type=_positive_int,
        nargs="+",
        default=[1, 8, 16, 32, 48],
        help="requests in flight for the TorchServe sweep",
    )
    bench.add_argument(
        "--triton-concurrency",
        type=_positive_int,
        nargs="+",
        default=[1, 2, 4, 8],
        help="requests in flight for the Triton sweep",
    )
    bench.add_argument(
        "--triton-batch-size",
        type=_positive_int,
        default=8,
        help="images per request to Triton for the pipeline and its sweep",
    )
    bench.add_argument(
        "--triton-batch-sizes",
        type=_positive_int,
        nargs="*",
        default=[1, 4, 16],
        help="other images-per-request values to measure at 4 requests in flight",
    )
    bench.add_argument("--naive-events", type=_positive_int, default=150)
    bench.add_argument("--cached-repeats", type=_positive_int, default=5)
    bench.add_argument("--partition-points", type=_positive_int, default=5_000_000)
    bench.add_argument("--out", type=Path, help="output folder (default bench/)")
    bench.add_argument("--docs", type=Path, help="markdown file for the table (default docs/)")
    bench.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    bench.add_argument(
        "--device",
        metavar="DEVICE",
        help="measure only the model, the handler and training on DEVICE (cuda, cuda:1, cpu)",
    )
    bench.add_argument(
        "--tiny", action="store_true", help="with --device: every path in seconds (tests)"
    )
    bench.add_argument(
        "--compile",
        action="store_true",
        help="with --device: also time training through torch.compile (minutes more)",
    )
    bench.set_defaults(func=_all)
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    partitioning = sub.add_parser(
        "partitioning", help="adaptive S2 partitioning: numpy against a pure-s2sphere loop"
    )
    partitioning.add_argument("--n", type=_positive_int, default=5_000_000, help="coordinates")
    partitioning.add_argument("--seed", type=int, default=0, help="random seed")
    partitioning.add_argument("--json", action="store_true", help="print JSON")
    partitioning.set_defaults(func=_partitioning)
    training = sub.add_parser(
        "training",
        help="training images/s per backbone, with random tensors and with real photos "
        "(not part of the default run: minutes per backbone on a CPU)",
    )
    training.add_argument(
        "--backbone",
        dest="backbones",
        action="append",
        help="repeatable (default efficientnet_lite0 and resnet50)",
    )
    training.add_argument("--batch-size", type=_positive_int, default=32)
    training.add_argument("--steps", type=_positive_int, default=3, help="timed steps")
    training.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    training.add_argument("--manifest", type=Path, help="default: the shared im2gps3k-dev")
    training.add_argument("--images", type=Path, help="default: the shared im2gps3k-dev")
    training.add_argument("--json", action="store_true", help="print JSON")
    training.set_defaults(func=_training)
    proofs = sub.add_parser(
        "exactly-once",
        help="the exactly-once proofs on a stack of their own: kill -9, a group that grows "
        "and shrinks, a frozen consumer, the broker restarted (tens of minutes at full size)",
        description="Counts every event's answers with kcat read_committed; results in "
        "bench/exactly-once.json and docs/benchmarks.md. Exits 1 when a proof of "
        "exactly_once missed or duplicated an answer.",
    )
    proofs.add_argument(
        "proofs",
        nargs="*",
        metavar="PROOF",
        help="kill, rebalance, freeze, broker-restart (default: all)",
    )
    proofs.add_argument("--model-server", choices=("torchserve", "triton"), default="torchserve")
    proofs.add_argument("--kill-events", type=_positive_int, default=1000)
    proofs.add_argument("--kills", type=_positive_int, default=10)
    proofs.add_argument("--rebalance-events", type=_positive_int, default=3000)
    proofs.add_argument("--freeze-events", type=_positive_int, default=1200)
    proofs.add_argument("--restart-events", type=_positive_int, default=1200)
    proofs.add_argument("--rate", type=_positive_float, default=40.0, help="events/s, paced proofs")
    proofs.add_argument("--seed", type=int, default=0, help="random seed of the kill moments")
    proofs.set_defaults(func=_exactly_once)
    soak = sub.add_parser(
        "soak",
        help="one exactly-once consumer answering a steady stream for an hour: memory, lag "
        "and p99 every 5 minutes, every answer counted at the end",
    )
    soak.add_argument("--duration", type=_duration, default=3600.0, help="e.g. 1h, 20m, 90s")
    soak.add_argument("--rate", type=_positive_float, required=True, help="events/s")
    soak.add_argument("--window", type=_duration, default=300.0, help="sampling window (5m)")
    soak.add_argument("--model-server", choices=("torchserve", "triton"), default="torchserve")
    soak.set_defaults(func=_soak)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _duration(text: str) -> float:
    """Seconds from 90, 90s, 20m or 1h."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1.0)
    try:
        return _positive_float(number) * unit
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"not a duration (90s, 20m, 1h): {text!r}") from exc


def _exactly_once(args: argparse.Namespace) -> int:
    from geoverdict.bench import proofs  # noqa: PLC0415

    options = proofs.ProofOptions(
        proofs=tuple(args.proofs) or proofs.PROOFS,
        model=args.model,
        photos=args.photos,
        model_server=args.model_server,
        kill_events=args.kill_events,
        kills=args.kills,
        rebalance_events=args.rebalance_events,
        rate=args.rate,
        freeze_events=args.freeze_events,
        restart_events=args.restart_events,
        seed=args.seed,
        **_outputs(args),
    )
    return 0 if proofs.run(options).exact else 1


def _soak(args: argparse.Namespace) -> int:
    from geoverdict.bench import proofs  # noqa: PLC0415

    outputs = _outputs(args)
    result = proofs.soak(
        args.duration,
        args.rate,
        model=args.model,
        photos=args.photos,
        model_server=args.model_server,
        window_s=args.window,
        out=outputs.get("out"),
        docs=outputs.get("docs", proofs.default_docs()),
    )
    return 0 if result.passed else 1


def _partitioning(args: argparse.Namespace) -> int:
    from geoverdict.bench import partitioning  # noqa: PLC0415

    result = partitioning.run(n=args.n, seed=args.seed)
    print(json.dumps(result, indent=2) if args.json else partitioning.report(result))
    return 0


def _training(args: argparse.Namespace) -> int:
    from geoverdict.bench import training  # noqa: PLC0415
    from geoverdict_common.paths import shared_data_dir  # noqa: PLC0415

    dev = shared_data_dir() / "im2gps3k-dev"
    results = [
        training.run(
            backbone,
            args.manifest or dev / "dev.csv",
            args.images or dev / "images",
            batch_size=args.batch_size,
            steps=args.steps,
            workers=args.workers,
        )
        for backbone in args.backbones or ["efficientnet_lite0", "resnet50"]
    ]
    print(json.dumps(results, indent=2) if args.json else training.report(results))
    return 0


def _outputs(args: argparse.Namespace) -> dict[str, Any]:
    """The output folder and docs file the options say, where they say one."""
    outputs: dict[str, Any] = {}
    if args.out:
        outputs["out"] = args.out
    if args.no_docs:
        outputs["docs"] = None
    elif args.docs:
        outputs["docs"] = args.docs
    return outputs


def _device(args: argparse.Namespace) -> int:
    """`bench --device`: imports nothing of the service or the stack (no Java, no Kafka)."""
    from geoverdict.bench.device import DeviceBenchOptions, results_name, run  # noqa: PLC0415

    chosen: dict[str, Any] = {
        "device": args.device,
        "model": args.model,
        "photos": args.photos,
        "compile": args.compile,
        **_outputs(args),
    }
    if args.batch_sizes:
        chosen["batch_sizes"] = tuple(args.batch_sizes)
    make = DeviceBenchOptions.tiny if args.tiny else DeviceBenchOptions
    options = make(**chosen)
    results = run(options)
    print(
        f"model alone {results['raw_images_per_s']}, handler {results['handler_images_per_s']} "
        f"(Pillow {results['handler_pillow_images_per_s']}) images/s; results in "
        f"{options.out / results_name(results)}"
    )
    return 0


def _all(args: argparse.Namespace) -> int:
    if args.device:
        return _device(args)
    from geoverdict.bench.suite import BenchOptions, run  # noqa: PLC0415

    options = BenchOptions(
        model=args.model,
        photos=args.photos,
        events=args.events,
        batch_size=args.batch_size,
        batch_sizes=tuple(args.batch_sizes or (1, 4, 8, 16)),
        concurrencies=tuple(args.concurrency),
        triton_batch_size=args.triton_batch_size,
        triton_concurrencies=tuple(args.triton_concurrency),
        triton_batch_sizes=tuple(args.triton_batch_sizes),
        naive_events=args.naive_events,
        cached_repeats=args.cached_repeats,
        partition_points=args.partition_points,
    )
    overrides = _outputs(args)
    if overrides:
        options = dataclasses.replace(options, **overrides)
    results = run(options)
    print(
        f"efficiency {results.efficiency}, pipeline/naive {results.streams.pipeline_vs_naive}x; "
        f"results in {options.out / 'results.json'}"
    )
    return 0
