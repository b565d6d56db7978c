"""`geoverdict train`: the training loop, top to bottom.

`_train` runs a whole run, read top to bottom: data and classes, the set-up (model, optimizer,
schedule, batches; restored when resuming), then the steps, each followed by its metrics line,
validation and checkpoint when they are due. The step itself (gradient accumulation, mixed
precision, DDP's one reduction per step) is step.py's, which the training benchmarks time.
The same code trains the multitask geo model and the helper scene network (`scene_only: true`),
on one CPU, one GPU or many (`torchrun ... geoverdict train ...`: DistributedDataParallel,
one process per GPU).

At the last step, the temperatures of every head and of the hierarchical product are fitted on
the validation photos (whole photographers held out; calibration.py) and saved with the last
checkpoint, so `geoverdict export` carries them (config `calibrate: false` skips it).

Run folder (`out_dir`): config.yaml, train.csv / val.csv (the split), cells/ (the partitions in
the public cells format), metrics.jsonl (one JSON object per log line and per validation),
checkpoints/step_NNNNNNN.pt and checkpoints/last.pt.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, IterableDataset
from tqdm import tqdm

from geoverdict_training.data.datasets import (
    Batch,
    EncodedBatch,
    ShardDataset,
    collate,
    collate_encoded,
)
from geoverdict_training.data.manifest import write_manifest
from geoverdict_training.data.skips import Skips
from geoverdict_training.evaluation.accuracy import evaluate_coordinates
from geoverdict_training.evaluation.baselines import baseline_evaluations
from geoverdict_training.evaluation.calibration_report import fit_report, held_out
from geoverdict_training.evaluation.predictions import predict_loader
from geoverdict_training.exceptions import CheckpointError, ConfigError
from geoverdict_training.geo.partition_files import write_cells_csv
from geoverdict_training.geo.partitions import Partition
from geoverdict_training.inference.best_guess import GuessRule, guess_points
from geoverdict_training.inference.calibration import Calibration
from geoverdict_training.inference.predictor import Predictor
from geoverdict_training.models.geo_model import GeoModel, ModelSpec
from geoverdict_training.models.haversine_smoothing import HaversineSmoothing
from geoverdict_training.train import distributed
from geoverdict_training.train.checkpoint import (
    FORMAT,
    Checkpoint,
    check_resumable,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from geoverdict_training.train.config import TrainConfig
from geoverdict_training.train.device_batches import DeviceBatches
from geoverdict_training.train.distributed import Process
from geoverdict_training.train.run_data import (
    Photos,
    TrainingData,
    eval_dataset,
    input_spec,
    prepare,
    train_dataset,
)
from geoverdict_training.train.sampling import ResumableSampler
from geoverdict_training.train.step import StepLosses, Stepper, autocast, grad_scaler
from geoverdict_training.vocabulary import SCENE_SETS

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run left behind."""

    step: int
    out_dir: Path
    checkpoint: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)  # the metrics.jsonl records
    skips: Skips = field(default_factory=lambda: Skips("training images"))


def model_spec(config: TrainConfig, partitions: tuple[Partition, ...]) -> ModelSpec:
    """The model of a config and its partitions (coarse -> fine)."""
    return ModelSpec(
        backbone=config.backbone,
        partitions=tuple((p.name, len(p)) for p in partitions),
        scenes=tuple(config.scenes),
        dropout=config.dropout,
    )


def freeze(model: GeoModel, config: TrainConfig) -> list[nn.Module]:
    """Freeze the backbone but `trainable` prefixes; returns the fully frozen norm layers, which
    stay in eval mode (their running statistics are part of what is frozen)."""
    if not config.freeze_backbone:
        return []
    used: set[str] = set()
    for name, parameter in model.backbone.named_parameters():
        keep = [prefix for prefix in config.trainable if name.startswith(prefix)]
        used.update(keep)
        parameter.requires_grad_(bool(keep))
    unused = sorted(set(config.trainable) - used)
    if unused:
        raise ConfigError(f"config key 'trainable': no backbone parameter starts with {unused}")
    return [
        module
        for module in model.backbone.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        and not any(p.requires_grad for p in module.parameters())
    ]


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW, over the trainable parameters."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """Step decay every `lr_step` optimizer steps (the paper's schedule), or a constant rate."""
    if config.lr_step:
        return torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, gamma=config.lr_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Mixed precision on GPU only: bf16 where supported (no loss scaling), else fp16."""
    if device.type != "cuda" or config.precision == "fp32":
        return None
    if config.precision == "fp16":
        return torch.float16
    if config.precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def decodes_on_device(config: TrainConfig, device: torch.device) -> bool:
    """Whether training photos are decoded on the device (config `decode`)."""
    return config.decode == "device" or (config.decode == "auto" and device.type == "cuda")


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class EpochBatches:
    """Endless batches, epoch after epoch; knows where in its epoch it is (for checkpoints).
    With `decode` (device_batches.DeviceBatches), the loader's encoded batches are decoded
    first."""

    def __init__(
        self,
        loader: DataLoader[Any],
        sampler: ResumableSampler | None,
        batch_size: int,
        decode: Callable[[EncodedBatch], Batch] | None = None,
    ):
        self.loader = loader
        self.sampler = sampler
        self.batch_size = batch_size
        self.decode = decode
        self.epoch = 0
        self.samples = 0  # this rank's samples consumed in the current epoch
        self.skips = Skips("training images")

    def __iter__(self) -> Iterator[Batch]:
        while True:
            dataset = self.loader.dataset
            if self.sampler is not None:
                self.sampler.set_epoch(self.epoch, start=self.samples)
                to_skip = 0
            else:  # a stream cannot seek: read past what this epoch already trained on
                if isinstance(dataset, ShardDataset):
                    dataset.set_epoch(self.epoch)
                to_skip = self.samples // self.batch_size
            produced = False
            for loaded in self.loader:
                produced = True
                if to_skip:
                    to_skip -= 1
                    continue
                batch = loaded if self.decode is None else self.decode(loaded)
                self.samples += self.batch_size
                self.skips.seen += batch.size + sum(batch.skipped.values())
                for reason, n in batch.skipped.items():
                    self.skips.skip(reason, n)
                if batch.size:
                    yield batch
            if not produced:
                raise ConfigError(
                    "config key 'batch_size': larger than the training photos of one process"
                )
            self.epoch += 1
            self.samples = 0


def _loader(
    config: TrainConfig, dataset: Photos, process: Process, *, train: bool, encoded: bool = False
) -> tuple[DataLoader[Any], ResumableSampler | None]:
    streamed = isinstance(dataset, IterableDataset)
    sampler = None
    if train and not streamed:
        sampler = ResumableSampler(
            dataset,  # type: ignore[arg-type]
            rank=process.rank,
            world_size=process.world_size,
            seed=config.seed,
        )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=collate_encoded if encoded else collate,
        pin_memory=process.device.type == "cuda",
        drop_last=train,
        generator=torch.Generator().manual_seed(config.seed + process.rank),
        persistent_workers=False,
    )
    return loader, sampler


def validate(
    model: GeoModel,
    data: TrainingData,
    config: TrainConfig,
    device: torch.device,
    *,
    calibrate: bool = False,
) -> tuple[dict[str, Any], Calibration | None]:
    """Great-circle accuracy of the hierarchical best cell's mean point, scene top-1 accuracy and
    the loss of every head, on the held-out photographers. With `calibrate` (a geo model), also
    fit the temperatures on these photos: the record gets their report, the calibrated model's
    accuracy (the partitions' temperatures can change the best cell) and that of its best guess
    (the default rule of inference/best_guess.py), and the baselines of the training photos."""
    dataset = eval_dataset(config, data.val, data.val_labels)
    loader, _ = _loader(config, dataset, Process(0, 0, 1, device), train=False)
    predictor = Predictor(
        model,
        data.partitions,
        None if data.hierarchy is None else data.hierarchy.ancestors,
        config.scenes,
    )
    calibrate = calibrate and bool(data.partitions)
    was_training = model.training
    model.eval()
    with autocast(device, autocast_dtype(config, device)):
        result = predict_loader(
            predictor, loader, device, losses=config.loss_weights, keep_logits=calibrate
        )
    model.train(was_training)
    record: dict[str, Any] = {"split": "val", "n": int(result.rows.size)}
    if result.points is not None and result.rows.size:
        record.update(_geo_accuracy(result.gt, result.points))
    for name, probabilities in result.scenes.items():
        truth = data.val.scenes[result.rows, SCENE_SETS.index(name)]
        labelled = truth >= 0
        if labelled.any():
            hits = probabilities[labelled].argmax(axis=1) == truth[labelled]
            record[f"top1_{name}"] = float(hits.mean() * 100.0)
    record.update({f"loss_{head}": value for head, value in result.losses.items()})
    if result.losses:
        weights = config.loss_weights
        record["loss"] = sum(weights.get(head, 1.0) * v for head, v in result.losses.items())
    if not calibrate or result.rows.size == 0:
        return record, None
    held = held_out(predictor, result, data.val)
    report = fit_report(predictor, held)
    cells = predictor.with_calibration(report.calibration).from_logits(held.logits).cells
    if cells is not None:
        fine, rule, gt = data.partitions[-1], GuessRule(), result.gt
        points = np.stack(predictor.best_points(cells), axis=1)
        record["calibrated"] = _geo_accuracy(gt, points)
        guesses = guess_points(fine, cells.double().cpu().numpy(), rule)
        record["calibrated"]["best_guess"] = _geo_accuracy(gt, guesses)
        baselines = baseline_evaluations(data.baselines, fine, rule, gt[:, 0], gt[:, 1])
        record["baselines"] = {name: e.to_json() for name, e in baselines.items()}
    record["calibration"] = report.to_json()
    return record, report.calibration


def _geo_accuracy(gt: np.ndarray, points: np.ndarray) -> dict[str, object]:
    """Accuracy and errors of (N, 2) predicted points against the (N, 2) truth."""
    return evaluate_coordinates(gt[:, 0], gt[:, 1], points[:, 0], points[:, 1]).to_json()


def _write_run_files(out: Path, config: TrainConfig, data: TrainingData) -> None:
    config.save(out / "config.yaml")
    write_manifest(data.train, out / "train.csv")
    write_manifest(data.val, out / "val.csv")
    for partition in data.partitions:
        write_cells_csv(partition, out / "cells" / f"{partition.name}.csv")


def _checkpoint_state(
    config: TrainConfig,
    run: _Run,
    data: TrainingData,
    step: int,
    calibration: dict[str, Any] | None,
) -> Checkpoint:
    ancestors = data.hierarchy.ancestors if data.hierarchy is not None else np.zeros((0, 0))
    state: Checkpoint = {
        "format": FORMAT,
        "config": config.to_dict(),
        "spec": run.model.spec.to_dict(),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "step": step,
        "epoch": run.batches.epoch,
        "epoch_samples": run.batches.samples,
        "partitions": [p.to_dict() for p in data.partitions],
        "ancestors": torch.from_numpy(np.ascontiguousarray(ancestors, dtype=np.int64)),
        "rng": rng_state(),
    }
    if calibration is not None:  # the temperatures fitted at the end of the run
        state["calibration"] = calibration
    if data.baselines:
        state["baselines"] = data.baselines
    return state


def _restore(
    state: Checkpoint,
    model: GeoModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    path: Path,
) -> None:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {exc}") from exc


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) a training run; returns where it stopped."""
    process = distributed.setup(config.device)
    try:
        return _train(config, process)
    finally:
        distributed.teardown(process)


def _train(config: TrainConfig, process: Process) -> TrainResult:
    """The run top to bottom: resume state, data, set-up, then the steps, each followed by
    its metrics line, validation and checkpoint when they are due."""
    resumed = _resumed(config)
    seed_everything(config.seed + process.rank)
    data = _data(config, process, resumed)
    run = _set_up(config, process, data, resumed)

    out = Path(config.out_dir)
    metrics_file = out / "metrics.jsonl"
    result = TrainResult(step=run.start, out_dir=out, checkpoint=None, skips=run.batches.skips)
    progress = tqdm(
        total=config.max_steps,
        initial=run.start,
        disable=not (process.is_main and config.progress),
        desc="train",
        unit="step",
        dynamic_ncols=True,
    )
    meter = _Meter()
    stream = iter(run.batches)
    step = run.start
    while step < config.max_steps:
        run.model.train()
        for module in run.frozen_norms:
            module.eval()
        meter.add(run.stepper(stream))
        run.scheduler.step()
        step += 1
        progress.update(1)
        last = step == config.max_steps

        if process.is_main and (step % config.log_every == 0 or last):
            record = {
                "step": step,
                "epoch": run.batches.epoch,
                "split": "train",
                "lr": run.scheduler.get_last_lr()[0],
                **meter.read(process.world_size),
                "skipped": run.batches.skips.skipped,
            }
            _append(metrics_file, result, record)
            progress.set_postfix(loss=f"{record['loss']:.3f}")
        evaluate_now = config.eval_every and step % config.eval_every == 0
        calibration = None
        if process.is_main and len(data.val) and (evaluate_now or last):
            record, calibration = _validation(config, data, run, step, config.calibrate and last)
            _append(metrics_file, result, record)
            log.info("validation at step %d: %s", step, _summary(record))
        if process.is_main and (
            (config.checkpoint_every and step % config.checkpoint_every == 0) or last
        ):
            state = _checkpoint_state(config, run, data, step, calibration)
            result.checkpoint = save_checkpoint(out / "checkpoints", state)
        distributed.barrier(process)
    progress.close()
    result.step = step
    if process.is_main:
        log.info("%s", run.batches.skips.summary())
    return result


def _resumed(config: TrainConfig) -> Checkpoint | None:
    """The checkpoint to resume from, checked against the config; None for a new run."""
    if not config.resume:
        return None
    path = Path(config.resume)
    resumed = load_checkpoint(path)
    check_resumable(resumed, config, path)
    return resumed


def _data(config: TrainConfig, process: Process, resumed: Checkpoint | None) -> TrainingData:
    """Photos and classes: partitions from the training photos, or the checkpoint's; the main
    process writes them into the run folder."""
    partitions = None
    if resumed is not None:
        partitions = [Partition.from_dict(p) for p in resumed["partitions"]]
    data = prepare(config, partitions)
    if process.is_main:
        _write_run_files(Path(config.out_dir), config, data)
        log.info(
            "%d training, %d validation photos; partitions %s",
            len(data.train),
            len(data.val),
            [f"{p.name}: {len(p)}" for p in data.partitions],
        )
    return data


@dataclass
class _Run:
    """What a run trains with, set up (or restored) before its first step."""

    model: GeoModel
    frozen_norms: list[nn.Module]  # stay in eval mode while the rest trains
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    batches: EpochBatches
    stepper: Stepper
    start: int  # the step it starts at: 0, or the checkpoint's


def _set_up(
    config: TrainConfig, process: Process, data: TrainingData, resumed: Checkpoint | None
) -> _Run:
    """Model, optimizer, schedule, loss scaling and batches; restored from the checkpoint when
    resuming; the model wrapped for DDP and torch.compile where the config asks."""
    device = process.device
    model = GeoModel(model_spec(config, data.partitions), config.pretrained and resumed is None)
    model.to(device)
    channels_last = config.channels_last and device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    frozen_norms = freeze(model, config)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    dtype = autocast_dtype(config, device)
    scaler = grad_scaler(device, dtype)
    on_device = decodes_on_device(config, device)
    dataset = train_dataset(config, data, encoded=on_device)
    loader, sampler = _loader(config, dataset, process, train=True, encoded=on_device)
    decode = DeviceBatches(device, input_spec(config)) if on_device else None
    batches = EpochBatches(loader, sampler, config.batch_size, decode)
    start = 0
    if resumed is not None and config.resume:
        _restore(resumed, model, optimizer, scheduler, scaler, Path(config.resume))
        start, batches.epoch, batches.samples = (
            int(resumed["step"]),
            int(resumed["epoch"]),
            int(resumed["epoch_samples"]),
        )
        if process.is_main:
            set_rng_state(resumed["rng"])  # other ranks: their own seeds, set above
        log.info("resumed from %s at step %d (epoch %d)", config.resume, start, batches.epoch)
    net: nn.Module = model
    if process.distributed:
        ids = [process.local_rank] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        net = torch.compile(net)  # type: ignore[assignment]
    stepper = Stepper(
        net,
        optimizer,
        scaler,
        device,
        autocast=dtype,
        channels_last=channels_last,
        grad_accum=config.grad_accum,
        loss_weights=config.loss_weights,
        distributed=process.distributed,
        smoothing=HaversineSmoothing.for_partitions(data.partitions, config.label_smoothing_km),
    )
    return _Run(model, frozen_norms, optimizer, scheduler, scaler, batches, stepper, start)


class _Meter:
    """The training losses and images/s since the last metrics line."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.images = 0
        self.clock = time.perf_counter()

    def add(self, losses: StepLosses) -> None:
        """One step's losses and images."""
        for key, value in losses.losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1
        self.images += losses.images

    def read(self, world_size: int) -> dict[str, float]:
        """Mean losses per step and images/s of every process, then start again."""
        elapsed = time.perf_counter() - self.clock
        values = {key: value / self.steps for key, value in self.sums.items()}
        values["images_per_s"] = self.images * world_size / max(elapsed, 1e-9)
        self._reset()
        return values


def _validation(
    config: TrainConfig, data: TrainingData, run: _Run, step: int, calibrate: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The validation record of this step, and the temperatures fitted (with their report,
    for the checkpoint) when `calibrate`."""
    values, fitted = validate(run.model, data, config, run.stepper.device, calibrate=calibrate)
    record = {"step": step, "epoch": run.batches.epoch, **values}
    if fitted is None:
        return record, None
    return record, {**fitted.to_dict(), "report": record["calibration"]}


def _append(path: Path, result: TrainResult, record: dict[str, Any]) -> None:
    result.history.append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _summary(record: dict[str, Any]) -> str:
    parts = []
    if "accuracy" in record:
        accuracy = record["accuracy"]
        parts.append("acc " + " / ".join(f"{accuracy[k]:.1f}" for k in accuracy) + " %")
    parts += [f"{k} {v:.1f} %" for k, v in record.items() if k.startswith("top1_")]
    if "loss" in record:
        parts.append(f"loss {record['loss']:.3f}")
    if "calibration" in record:
        before, after = record["calibration"]["before"], record["calibration"]["after_in_sample"]
        parts.append(f"ECE {before['ece']:.3f} -> {after['ece']:.3f} after calibration")
    return ", ".join(parts)
