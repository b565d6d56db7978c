"""`geoverdict bench [partitioning]`: run the benchmarks and print their numbers."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `bench` command; without a benchmark name it runs them all."""
    bench = subparsers.add_parser(
        "bench", help="run the benchmarks", description="Run the benchmarks and print numbers."
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _partitioning(args: argparse.Namespace) -> int:
    from geoverdict.bench import partitioning  # noqa: PLC0415

    result = partitioning.run(n=args.n, seed=args.seed)
    print(json.dumps(result, indent=2) if args.json else partitioning.report(result))
    return 0


def _all(args: argparse.Namespace) -> int:
    from geoverdict.bench import partitioning  # noqa: PLC0415

    print(partitioning.report(partitioning.run()))
    return 0
