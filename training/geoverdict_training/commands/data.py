"""`geoverdict partition | evaluate | data`: the data and evaluation commands.

Only argument parsing lives here; numpy and the work are imported inside each command, so that
`geoverdict --help` stays fast and never imports torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from geoverdict_training.exceptions import ConfigError, DataFileError
from geoverdict_training.vocabulary import DEFAULT_PARTITIONS

if TYPE_CHECKING:
    from geoverdict_training.evaluation.model_report import ModelEvaluation
    from geoverdict_training.geo.partitions import PartitionSpec

# The CLI prints these as one line on stderr and exits 2 (a user's input, not a bug).

log = logging.getLogger(__name__)


def _partition_spec(text: str) -> PartitionSpec:
    from geoverdict_training.geo.partitions import PartitionSpec  # noqa: PLC0415

    try:
        return PartitionSpec.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `partition`, `evaluate` and `data` commands."""
    partition = subparsers.add_parser(
        "partition",
        help="build adaptive S2 cell partitions from a manifest's coordinates",
        description="Partition the photos of a manifest into S2 cells (the seed paper's adaptive "
        "algorithm) and write DIR/cells_TAUMIN_TAUMAX.csv per partition, in the public "
        "GeoEstimation cells format.",
    )
    partition.add_argument("--manifest", type=Path, required=True, help="manifest CSV")
    partition.add_argument("--out", type=Path, required=True, help="output folder")
    partition.add_argument(
        "--partition",
        dest="partitions",
        action="append",
        type=_partition_spec,
        metavar="TAU_MIN:TAU_MAX",
        help=f"thresholds of one partition; repeatable (default {' '.join(DEFAULT_PARTITIONS)})",
    )
    partition.set_defaults(func=_partition)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="accuracy at 1/25/200/750/2500 km of a predictions CSV or of a model",
        description="Evaluate a predictions CSV in GeoEstimation's published format "
        "(img_id,gt_lat,predicted_lat,gt_long,predicted_long,...; a trailing summary is ignored), "
        "or a model (a .mar archive or a training checkpoint) on a manifest's photos: the "
        "hierarchical prediction's best cell (its photos' mean point) against the ground truth, "
        "and the calibration of its top-1 cell (ECE over 10 confidence bins, NLL).",
    )
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", type=Path, help="predictions CSV")
    source.add_argument("--model", type=Path, help="model archive (.mar) or checkpoint")
    evaluate.add_argument("--manifest", type=Path, help="with --model: manifest CSV")
    evaluate.add_argument("--images", type=Path, help="with --model: image folder")
    evaluate.add_argument("--batch-size", type=int, default=32, help="with --model")
    evaluate.add_argument("--workers", type=int, default=2, help="with --model: loader workers")
    evaluate.add_argument(
        "--five-crop",
        action="store_true",
        help="with --model: max over five crops per photo, as the reference (5x the compute: "
        "a batch is --batch-size photos, 5x as many crops)",
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON, not a table")
    evaluate.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="with --model: draw the reliability diagram (a calibrated model's also without "
        "its temperatures)",
    )
    evaluate.add_argument(
        "--predictions-out",
        type=Path,
        metavar="FILE.jsonl",
        help='with --model: one line per photo, {"id", "lat", "lon", "reply"}, the reply as '
        "the TorchServe handler gives it",
    )
    evaluate.set_defaults(func=_evaluate)

    data = subparsers.add_parser("data", help="build manifests and shards of training data")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    from_exif = sub.add_parser(
        "from-exif", help="write a manifest of the photos in DIR that carry GPS EXIF"
    )
    from_exif.add_argument("dir", type=Path, help="folder of photos (searched recursively)")
    from_exif.add_argument("--out", type=Path, help="manifest CSV (default DIR/manifest.csv)")
    from_exif.set_defaults(func=_from_exif)

    to_shards = sub.add_parser(
        "to-shards", help="pack a manifest's images into MP-16-style msgpack shards"
    )
    to_shards.add_argument("--manifest", type=Path, required=True, help="manifest CSV")
    to_shards.add_argument("--images", type=Path, required=True, help="image folder")
    to_shards.add_argument("--out", type=Path, required=True, help="empty folder for shards")
    to_shards.add_argument("--shard-size", type=int, default=4096, help="records per shard")
    to_shards.add_argument(
        "--short-side", type=int, help="re-encode images larger than this short side (px)"
    )
    to_shards.set_defaults(func=_to_shards)

    split = sub.add_parser(
        "split", help="split a manifest by photographer (AUTHOR) into train.csv and val.csv"
    )
    split.add_argument("--manifest", type=Path, required=True, help="manifest CSV")
    split.add_argument("--out", type=Path, required=True, help="folder for train.csv, val.csv")
    split.add_argument("--val-fraction", type=float, default=0.15, help="share held out")
    split.add_argument("--seed", type=int, default=0, help="split seed (config: split_seed)")
    split.add_argument("--images", type=Path, help="keep only photos whose file is here")
    split.set_defaults(func=_split)


def _partition(args: argparse.Namespace) -> int:
    from geoverdict_training.data.manifest import read_manifest  # noqa: PLC0415
    from geoverdict_training.geo.partition_files import cells_file_name, write_cells_csv  # noqa: PLC0415
    from geoverdict_training.geo.partitions import PartitionSpec, build_partitions  # noqa: PLC0415

    specs = args.partitions or [PartitionSpec.parse(text) for text in DEFAULT_PARTITIONS]
    manifest = read_manifest(args.manifest)
    print(manifest.skips.summary())
    for spec, partition in zip(
        specs, build_partitions(manifest.lat, manifest.lon, specs), strict=True
    ):
        path = args.out / cells_file_name(spec)
        write_cells_csv(partition, path)
        print(
            f"{path}: {len(partition)} classes, {int(partition.counts.sum())} of "
            f"{len(manifest)} photos in a class"
        )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from geoverdict_training.evaluation.accuracy import read_predictions_csv  # noqa: PLC0415

    if args.model is None:
        for flag, value in (
            ("--five-crop", args.five_crop),
            ("--plot", args.plot),
            ("--predictions-out", args.predictions_out),
        ):
            if value:
                raise ConfigError(f"{flag} needs --model (a predictions CSV is already predicted)")
        result = read_predictions_csv(args.predictions).evaluate()
        print(json.dumps(result.to_json()) if args.json else result.table())
        return 0
    evaluated = _evaluate_model(args)
    print(json.dumps(evaluated.to_json()) if args.json else evaluated.table())
    return 0


def _evaluate_model(args: argparse.Namespace) -> ModelEvaluation:
    from geoverdict_training.data.manifest import read_manifest  # noqa: PLC0415
    from geoverdict_training.evaluation.model_report import evaluate_bundle, write_replies  # noqa: PLC0415
    from geoverdict_training.evaluation.reliability import plot_reliability  # noqa: PLC0415
    from geoverdict_training.train.export import load_bundle  # noqa: PLC0415

    if args.manifest is None or args.images is None:
        raise ConfigError("evaluate --model needs --manifest and --images")
    bundle = load_bundle(args.model)
    manifest = read_manifest(args.manifest).with_existing_files(args.images)
    print(manifest.skips.summary(), file=sys.stderr)
    result = evaluate_bundle(
        bundle,
        manifest,
        args.images,
        five_crop=args.five_crop,
        batch_size=args.batch_size,
        workers=args.workers,
        uncalibrated=args.plot is not None,
        keep_cells=args.predictions_out is not None,
    )
    print(f"{bundle.version}: {result.predictions.skips.summary()}", file=sys.stderr)
    if args.plot is not None:
        curves = {"this model": result.calibration}
        if result.uncalibrated is not None:
            curves = {"without temperatures": result.uncalibrated, "calibrated": result.calibration}
        plot_reliability(curves, args.plot)
        print(f"{args.plot}: reliability diagram", file=sys.stderr)
    if args.predictions_out is not None:
        lines = write_replies(bundle, result, manifest, args.images, args.predictions_out)
        print(f"{args.predictions_out}: {lines} replies", file=sys.stderr)
    return result


def _from_exif(args: argparse.Namespace) -> int:
    from geoverdict_training.data.manifest import write_manifest  # noqa: PLC0415
    from geoverdict_training.data.photo_folders import manifest_from_exif  # noqa: PLC0415

    if not args.dir.is_dir():
        raise DataFileError(f"not a folder: {args.dir}")
    manifest = manifest_from_exif(args.dir)
    out = args.out or args.dir / "manifest.csv"
    write_manifest(manifest, out)
    print(manifest.skips.summary())
    print(f"{out}: {len(manifest)} photos")
    return 0


def _to_shards(args: argparse.Namespace) -> int:
    from geoverdict_training.data.manifest import read_manifest  # noqa: PLC0415
    from geoverdict_training.data.shards import write_shards  # noqa: PLC0415

    manifest = read_manifest(args.manifest)
    print(manifest.skips.summary())
    skips = write_shards(manifest, args.images, args.out, args.shard_size, args.short_side)
    print(skips.summary())
    return 0


def _split(args: argparse.Namespace) -> int:
    from geoverdict_training.data.manifest import read_manifest, write_manifest  # noqa: PLC0415
    from geoverdict_training.data.splits import split_by_author  # noqa: PLC0415

    manifest = read_manifest(args.manifest)
    if args.images is not None:
        manifest = manifest.with_existing_files(args.images)
    print(manifest.skips.summary())
    split = split_by_author(manifest, args.val_fraction, args.seed)
    for name, part in (("train", split.train), ("val", split.val)):
        path = args.out / f"{name}.csv"
        write_manifest(part, path)
        authors = len(set(part.authors or []))
        print(f"{path}: {len(part)} photos by {authors} photographers")
    return 0
