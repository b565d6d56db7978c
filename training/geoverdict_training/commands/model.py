"""`geoverdict train | export | calibrate | scenes propagate`: the model commands.

Only argument parsing lives here; torch and the work are imported inside each command, so that
`geoverdict --help` stays fast and the service never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_STORE = Path("model_store")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `train`, `export`, `calibrate` and `scenes` commands."""
    train = subparsers.add_parser(
        "train",
        help="train the multitask geo model (or the helper scene network)",
        description="Train from a YAML config with key=value overrides (e.g. lr=0.001 "
        "scene_only=true). The same command runs under torchrun for several GPUs or nodes.",
    )
    train.add_argument("-c", "--config", type=Path, help="YAML config (training/configs/)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    train.set_defaults(func=_train)

    export = subparsers.add_parser(
        "export",
        help="write a TorchServe archive (.mar) of a trained model",
        description="Package a checkpoint's weights, partitions, hierarchy, label names, the "
        "model code and the handler into MODEL_STORE/NAME.mar with torch-model-archiver.",
    )
    export.add_argument("--checkpoint", type=Path, required=True, help="training checkpoint")
    export.add_argument("--name", default="geoverdict", help="model name (default geoverdict)")
    export.add_argument("--out", type=Path, default=DEFAULT_STORE, help="model store folder")
    export.add_argument("--batch-size", type=int, default=4, help="batch size (4: best on CPU)")
    export.add_argument("--max-batch-delay", type=int, default=50, help="batch delay (ms)")
    export.add_argument(
        "--workers",
        type=int,
        default=2,
        help="TorchServe workers (default 2: one per core on CPU, each with one torch thread)",
    )
    export.add_argument(
        "--best-guess",
        default="expected_distance",
        metavar="RULE",
        help="how replies choose the best guess: expected_distance (default: the point of least "
        "expected distance to the truth) or mass_within:KM (the most probability within KM); "
        "docs/verdicts.md",
    )
    export.set_defaults(func=_export)

    calibrate = subparsers.add_parser(
        "calibrate",
        help="refit a model archive's temperatures on held-out photos (new model version)",
        description="Fit one temperature per head and one for the hierarchical product on the "
        "photos of a manifest the model was not trained on (e.g. a training run's val.csv), "
        "report the calibration error before and after (in-sample and cross-fitted across two "
        "halves of the photographers), and write the archive with the new temperatures: a new "
        "content hash and model version. Without --out the archive is replaced, safely.",
    )
    calibrate.add_argument("--model", type=Path, required=True, help="model archive (.mar)")
    calibrate.add_argument("--manifest", type=Path, required=True, help="held-out photos (CSV)")
    calibrate.add_argument("--images", type=Path, required=True, help="image folder")
    calibrate.add_argument("--out", type=Path, help="new archive (default: replace --model)")
    calibrate.add_argument("--batch-size", type=int, default=32)
    calibrate.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    calibrate.add_argument("--json", action="store_true", help="print the report as JSON")
    calibrate.set_defaults(func=_calibrate)

    scenes = subparsers.add_parser("scenes", help="the helper scene network's commands")
    sub = scenes.add_subparsers(dest="scenes_command", required=True, metavar="ACTION")
    propagate = sub.add_parser(
        "propagate",
        help="predict scene labels for the photos of a manifest that lack them",
        description="Fill S3/S16/S365 labels (top-1) and Prob_indoor/natural/urban with a scene "
        "model for every photo missing a label; write the completed manifest.",
    )
    propagate.add_argument("--model", type=Path, required=True, help="checkpoint or .mar")
    propagate.add_argument("--manifest", type=Path, required=True, help="manifest CSV")
    propagate.add_argument("--images", type=Path, required=True, help="image folder")
    propagate.add_argument("--out", type=Path, required=True, help="completed manifest CSV")
    propagate.add_argument("--batch-size", type=int, default=32)
    propagate.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    propagate.set_defaults(func=_propagate)


def _train(args: argparse.Namespace) -> int:
    from geoverdict_training.train.config import load_config  # noqa: PLC0415
    from geoverdict_training.train.trainer import train  # noqa: PLC0415

    config = load_config(args.config, args.overrides)
    result = train(config)
    if result.checkpoint is not None:
        print(f"step {result.step}: {result.checkpoint}")
    for record in result.history:
        if record.get("split") == "val" and record["step"] == result.step:
            print(json.dumps(record))
    print(result.skips.summary())
    return 0


def _export(args: argparse.Namespace) -> int:
    from geoverdict_common.serving import ServingConfig  # noqa: PLC0415
    from geoverdict_training.inference.best_guess import GuessRule  # noqa: PLC0415
    from geoverdict_training.train.export import export_archive  # noqa: PLC0415

    serving = ServingConfig(args.batch_size, args.max_batch_delay, args.workers, args.workers)
    rule = GuessRule.parse(args.best_guess)
    archive, version = export_archive(args.checkpoint, args.name, args.out, serving, rule)
    size_mb = archive.stat().st_size / 1e6
    print(f"{archive}: model_version {version}, {size_mb:.1f} MB")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from geoverdict_training.data.manifest import read_manifest  # noqa: PLC0415
    from geoverdict_training.evaluation.recalibration import calibrate_archive  # noqa: PLC0415
    from geoverdict_training.exceptions import ConfigError  # noqa: PLC0415

    if args.model.suffix != ".mar" or not args.model.is_file():
        raise ConfigError(f"--model must be a .mar archive, got {args.model}")
    manifest = read_manifest(args.manifest).with_existing_files(args.images)
    print(manifest.skips.summary(), file=sys.stderr)
    archive, version, report = calibrate_archive(
        args.model,
        manifest,
        args.images,
        args.out,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    print(json.dumps(report.to_json()) if args.json else report.table())
    print(f"{archive}: model_version {version}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _propagate(args: argparse.Namespace) -> int:
    from geoverdict_training.data.manifest import read_manifest, write_manifest  # noqa: PLC0415
    from geoverdict_training.train.export import load_bundle  # noqa: PLC0415
    from geoverdict_training.train.propagation import propagate_scenes  # noqa: PLC0415

    manifest = read_manifest(args.manifest)
    print(manifest.skips.summary())
    completed, report = propagate_scenes(
        load_bundle(args.model), manifest, args.images, args.batch_size, args.workers
    )
    write_manifest(completed, args.out)
    print(report.summary())
    print(f"{args.out}: {len(completed)} photos")
    return 0
