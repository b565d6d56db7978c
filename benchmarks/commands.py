"""`python -m benchmarks [partitioning | training | recipes | near-duplicates |
near-duplicate-index | provenance-cost | repost-predictions]`: run the benchmarks and write
their numbers (run from the repository's root: the benchmarks are a development package, not
installed with the product)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.exceptions import BenchError
from geoverdict.cli import configure_logging


def build_parser() -> argparse.ArgumentParser:
    """The benchmarks' parser; without a benchmark name it runs them all."""
    bench = argparse.ArgumentParser(
        prog="python -m benchmarks",
        allow_abbrev=False,  # `--n` of a sub-benchmark must not read as `--naive-events`
        description="Without a benchmark name: the whole suite (raw, handler, torchserve, "
        "pipeline, cached, naive, Triton beside TorchServe, partitioning) into "
        "bench/results.json, bench/costs.json (what `geoverdict capacity` plans with), "
        "bench/throughput.png and docs/benchmarks.md. With --device: the model, the handler and "
        "training on that device only (no Java, no Kafka) into bench/results-gpu.json and the "
        "GPU section of docs/benchmarks.md.",
    )
    bench.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
    recipes = sub.add_parser(
        "recipes",
        help="how the demo model's recipe was chosen: label smoothing, the MP-16 prior, the "
        "backbone and the best-guess rule, by 5-fold cross-validation over the demo split's "
        "training photographers (frozen features, linear heads) into bench/recipes.json",
    )
    recipes.add_argument(
        "--backbone",
        dest="backbones",
        action="append",
        help="repeatable (default efficientnet_lite0 then efficientnet_lite2)",
    )
    recipes.add_argument(
        "--taus",
        type=_taus,
        action="append",
        metavar="KM,KM,KM",
        help="label smoothing, one tau per partition coarse -> fine, 0 for the hard label; "
        "repeatable (default 0,0,0 500,500,500 1000,1000,1000 2000,1000,500)",
    )
    recipes.add_argument(
        "--prior-weights",
        type=float,
        nargs="*",
        metavar="A",
        help="MP-16 prior adjustments of the first backbone's hard-label heads (default 0.5 1; "
        "none given: no prior recipe)",
    )
    recipes.add_argument(
        "--rules",
        nargs="+",
        help="best-guess rules answered besides the top cell (default expected_distance "
        "mass_within:750 mass_within:2500)",
    )
    recipes.add_argument("--folds", type=_positive_int, help="default 5")
    recipes.add_argument("--seed", type=int, help="of the folds and the heads (default 0)")
    recipes.add_argument("--epochs", type=_positive_int, help="of the heads (default 5)")
    recipes.add_argument(
        "--views", type=_positive_int, help="centre crop + augmentations per photo (default 5)"
    )
    recipes.add_argument(
        "--limit", type=_positive_int, help="only the first N training photos (a smoke run)"
    )
    recipes.add_argument("--config", type=Path, help="default training/configs/demo.yaml")
    recipes.add_argument("--manifest", type=Path, help="default: the shared im2gps3k-dev")
    recipes.add_argument("--images", type=Path, help="default: the shared im2gps3k-dev")
    recipes.add_argument("--cache", type=Path, help="features cache (default .cache/recipes)")
    recipes.add_argument(
        "--out", type=Path, help="output folder (default bench/; with --limit .run/recipes/)"
    )
    recipes.add_argument("--json", action="store_true", help="print JSON")
    recipes.set_defaults(func=_recipes)
    index = sub.add_parser(
        "near-duplicate-index",
        help="the provenance near-duplicate index on a redis-server of its own: lookup p50/p99, "
        "client CPU-ms per lookup and per record, Redis memory per photo, index-level recall, "
        "into bench/near-duplicate-index.json",
    )
    index.add_argument("--photos", type=_positive_int, help="indexed photos (default 1,000,000)")
    index.add_argument("--lookups", type=_positive_int, help="single-photo lookups (default 2,000)")
    index.add_argument("--tables", type=_positive_int, help="cuts of the hash bits indexed")
    index.add_argument("--hashes", type=_positive_int, help="indexed hashes per photo (default 3)")
    index.add_argument("--variants", type=int, help="variants queried per hash (default 4)")
    index.add_argument("--max-distance", type=int, help="default: the index's")
    index.add_argument("--out", type=Path, help="output folder (default bench/)")
    index.add_argument("--json", action="store_true", help="print JSON")
    index.set_defaults(func=_near_duplicate_index)
    near = sub.add_parser(
        "near-duplicates",
        help="the perceptual fingerprint: recall per repost alteration, false matches among all "
        "pairs of distinct development photos and CPU-ms per fingerprint into "
        "bench/near-duplicates.json",
    )
    near.add_argument(
        "--limit", type=_positive_int, help="only the first N photos (a smoke run, .run/)"
    )
    near.add_argument("--images", type=Path, help="default: the shared im2gps3k-dev images")
    near.add_argument("--out", type=Path, help="output folder (default bench/)")
    near.add_argument("--json", action="store_true", help="print JSON")
    near.set_defaults(func=_near_duplicates)
    cost = sub.add_parser(
        "provenance-cost",
        help="what provenance adds to each event in the consumer's CPU, cold and cached, and "
        "Redis bytes per photo, into bench/provenance-cost.json (make bench runs it too)",
    )
    cost.add_argument("--photos", type=Path, help="photos folder (default: the dev photos)")
    cost.add_argument("--measured", type=_positive_int, default=400, help="photos measured")
    cost.add_argument("--tables", type=_positive_int, help="the index's tables (default 2)")
    cost.add_argument("--out", type=Path, help="output folder (default bench/)")
    cost.add_argument("--json", action="store_true", help="print JSON")
    cost.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    cost.set_defaults(func=_provenance_cost)
    reposts = sub.add_parser(
        "repost-predictions",
        help="whether a near-duplicate may reuse its original's prediction: the demo model's "
        "best guess for each altered copy the fingerprint finds against the original's, into "
        "bench/repost-predictions.json",
    )
    reposts.add_argument("--photos", type=_positive_int, default=100, help="originals")
    reposts.add_argument("--images", type=Path, help="default: the shared im2gps3k-dev images")
    reposts.add_argument("--out", type=Path, help="output folder (default bench/)")
    reposts.add_argument("--json", action="store_true", help="print JSON")
    reposts.set_defaults(func=_repost_predictions)
    return bench


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _partitioning(args: argparse.Namespace) -> int:
    from benchmarks import partitioning  # noqa: PLC0415

    result = partitioning.run(n=args.n, seed=args.seed)
    print(json.dumps(result, indent=2) if args.json else partitioning.report(result))
    return 0


def _training(args: argparse.Namespace) -> int:
    from benchmarks import training  # noqa: PLC0415
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


def _taus(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(tau) for tau in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not comma-separated km: {text!r}") from exc


def _recipes(args: argparse.Namespace) -> int:
    from benchmarks import recipes  # noqa: PLC0415

    given = {
        "config": args.config,
        "manifest": args.manifest,
        "images": args.images,
        "backbones": args.backbones and tuple(args.backbones),
        "taus_km": args.taus and tuple(args.taus),
        "prior_weights": None if args.prior_weights is None else tuple(args.prior_weights),
        "rules": args.rules and tuple(args.rules),
        "folds": args.folds,
        "seed": args.seed,
        "views": args.views,
        "heads": args.epochs and recipes.HeadTraining(epochs=args.epochs),
        "limit": args.limit,
        "cache": args.cache,
        "out": args.out,
    }
    chosen = {key: value for key, value in given.items() if value is not None}
    result = recipes.run(recipes.RecipeOptions(**chosen))
    print(json.dumps(result, indent=2) if args.json else recipes.report(result))
    return 0


def _near_duplicate_index(args: argparse.Namespace) -> int:
    from benchmarks import near_duplicate_index as bench  # noqa: PLC0415

    given = {
        "photos": args.photos,
        "lookups": args.lookups,
        "tables": args.tables,
        "hashes": args.hashes,
        "variants": args.variants,
        "max_distance": args.max_distance,
        "out": args.out,
    }
    options = bench.IndexBenchOptions(**{k: v for k, v in given.items() if v is not None})
    result = bench.run(options)
    print(json.dumps(result, indent=2) if args.json else bench.report(result))
    return 0


def _near_duplicates(args: argparse.Namespace) -> int:
    from benchmarks import near_duplicates  # noqa: PLC0415

    options = near_duplicates.NearDuplicateOptions(
        images=args.images, limit=args.limit or 0, out=args.out
    )
    result = near_duplicates.run(options)
    print(json.dumps(result, indent=2) if args.json else near_duplicates.report(result))
    return 0


def _repost_predictions(args: argparse.Namespace) -> int:
    from benchmarks import repost_predictions  # noqa: PLC0415

    options = repost_predictions.RepostOptions(
        model=args.model, images=args.images, photos=args.photos, out=args.out
    )
    result = repost_predictions.run(options)
    print(json.dumps(result, indent=2) if args.json else repost_predictions.report(result))
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
    from benchmarks.device import DeviceBenchOptions, results_name, run  # noqa: PLC0415

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


def _provenance_cost(args: argparse.Namespace) -> int:
    from benchmarks import provenance_cost  # noqa: PLC0415
    from benchmarks.suite import load_photos  # noqa: PLC0415
    from geoverdict_common.paths import project_dir  # noqa: PLC0415

    options = provenance_cost.CostOptions(measured=args.measured)
    if args.tables:
        options = dataclasses.replace(options, tables=args.tables)
    photos = load_photos(args.photos, options.measured + options.loaded)
    result = provenance_cost.run(photos, options)
    docs = None if args.no_docs else project_dir() / "docs" / "benchmarks.md"
    provenance_cost.write(result, args.out or Path("bench"), docs)
    print(json.dumps(result, indent=2) if args.json else provenance_cost.report(result))
    return 0


def _all(args: argparse.Namespace) -> int:
    if args.device:
        return _device(args)
    from benchmarks.suite import BenchOptions, run  # noqa: PLC0415

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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m benchmarks`; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:  # bad input, missing photos or model: one line, no stack trace
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
