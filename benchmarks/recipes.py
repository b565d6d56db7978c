"""How the demo model's training recipe was chosen: label smoothing, the MP-16 prior, the backbone
and the best-guess rule, compared by 5-fold cross-validation over the TRAINING photographers.

Training the demo model takes about 20 minutes a run on a shared CPU, too slow to compare a dozen
recipes a few times each. This proof uses a cheap proxy instead: the backbone is frozen, its
pooled features are extracted once per photo (a centre crop, as the model is evaluated, and a
few training augmentations, as it is trained), and only linear heads learn, one per partition,
as the demo model's heads do on top of its backbone. What the proxy ranks is the recipe, not the
absolute accuracy of a fine-tuned model.

The protocol:
- the demo split (training/configs/demo.yaml); its validation photographers are never used, not
  even their pixels: the demo model reports its numbers on them, so they choose nothing here;
- the training photographers are dealt into folds (a seeded permutation of the sorted authors,
  author k in fold k % folds), so one photographer's photos never lie on both sides of a fold;
- per fold, everything is rebuilt from the fold's training photos, as a training run builds it
  from its own: the partitions, the hierarchy, the labels, the baselines;
- the heads learn hard labels or haversine soft targets (models/haversine_smoothing.py, through
  the product's multitask_loss); the hierarchical product of their probabilities
  (inference/hierarchical.py) gets one temperature, fitted on the fold's held-out photos as the
  trainer fits it on its validation photographers (inference/calibration.py);
- the MP-16 prior adjustment reweighs those probabilities by how much likelier MP-16's 4.7 M
  photos (the published cells_50_1000 counts, summed into the fold's fine cells) make each
  cell than the fold's training photos do: log p + a (log prior_mp16 - log prior_train), its
  temperature refitted;
- each distribution is answered by its top cell's point and by the product's best-guess rules
  (inference/best_guess.py); the constant points (evaluation/baselines.py) and the fold's
  training prior are answered alike;
- the out-of-fold answers of all training photos are pooled into one accuracy per recipe and
  answer; the ECE (evaluation/reliability.py) is the mean over the folds.

Features are cached under .cache/recipes/ (one file per backbone, input and number of views, by
image id), so a rerun costs the cross-validation only: a few minutes on two cores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from benchmarks.exceptions import BenchError
from geoverdict_common.distances import haversine_km
from geoverdict_common.paths import SHARED_DATA_ENV, cache_dir, runs_dir, shared_data_dir
from geoverdict_training.data.labels import assign_classes
from geoverdict_training.evaluation.accuracy import THRESHOLDS_KM, evaluate_distances
from geoverdict_training.evaluation.baselines import CONSTANTS, constant_points
from geoverdict_training.evaluation.reliability import reliability, top1_cell_hits
from geoverdict_training.exceptions import ImageError, TrainingError
from geoverdict_training.geo.hierarchy import Hierarchy, build_hierarchy
from geoverdict_training.geo.partition_files import read_cells_csv
from geoverdict_training.geo.partitions import Partition, PartitionSpec, build_partitions
from geoverdict_training.images.decode import load_image
from geoverdict_training.images.transforms import eval_transform, train_transform
from geoverdict_training.inference.best_guess import GuessRule, guess_points
from geoverdict_training.inference.calibration import fit_temperature
from geoverdict_training.inference.hierarchical import hierarchical_scores
from geoverdict_training.models.backbones import backbone_info, create_backbone
from geoverdict_training.models.haversine_smoothing import HaversineSmoothing
from geoverdict_training.models.losses import multitask_loss
from geoverdict_training.train.config import TrainConfig, load_config
from geoverdict_training.train.run_data import prepare

log = logging.getLogger(__name__)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

DEMO_CONFIG = Path("training/configs/demo.yaml")
# (crop, short side before the centre crop): Lite0 as the demo model, Lite2 as it was tried.
BACKBONE_INPUTS = {"efficientnet_lite0": (192, 220), "efficientnet_lite2": (224, 256)}
BACKBONES = tuple(BACKBONE_INPUTS)
TAUS_KM = (
    (0.0, 0.0, 0.0),
    (500.0, 500.0, 500.0),
    (1000.0, 1000.0, 1000.0),
    (2000.0, 1000.0, 500.0),
)
PRIOR_WEIGHTS = (0.5, 1.0)
RULES = ("expected_distance", "mass_within:750", "mass_within:2500")
TOP_CELL = "top cell"
MP16_CELLS = Path("geoestimation") / "cells_50_1000.csv"
VIEWS = 5  # the centre crop, then 4 training augmentations
FEATURE_BATCH = 32
CONSTANT = "constant"
TRAINING_PRIOR = "training prior"


@dataclass(frozen=True)
class HeadTraining:
    """How the linear heads learn (the demo model's head settings, weight decay raised for
    heads trained on their own)."""

    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-2
    epochs: int = 5
    batch_size: int = 32


@dataclass(frozen=True)
class Recipe:
    """One training recipe: the backbone, one label smoothing tau per partition (0: the hard
    label), and the weight of the MP-16 prior adjustment at inference (0: none)."""

    backbone: str
    taus_km: tuple[float, ...]
    prior_weight: float = 0.0

    @property
    def heads(self) -> tuple[str, tuple[float, ...]]:
        """What its heads are trained from: recipes that differ in the prior only share them."""
        return self.backbone, self.taus_km

    @property
    def name(self) -> str:
        """E.g. `lite0 hard`, `lite0 tau 2000/1000/500`, `lite0 hard + MP-16 prior x0.5`."""
        short = self.backbone.removeprefix("efficientnet_")
        if not any(self.taus_km):
            smoothing = "hard"
        elif len(set(self.taus_km)) == 1:
            smoothing = f"tau {self.taus_km[0]:g}"
        else:
            smoothing = "tau " + "/".join(f"{tau:g}" for tau in self.taus_km)
        prior = f" + MP-16 prior x{self.prior_weight:g}" if self.prior_weight else ""
        return f"{short} {smoothing}{prior}"


@dataclass(frozen=True)
class RecipeOptions:
    """What `python -m benchmarks recipes` compares, and where it reads and writes."""

    config: Path = DEMO_CONFIG
    manifest: Path | None = None  # default: the shared im2gps3k-dev
    images: Path | None = None
    backbones: tuple[str, ...] = BACKBONES
    taus_km: tuple[tuple[float, ...], ...] = TAUS_KM
    prior_weights: tuple[float, ...] = PRIOR_WEIGHTS  # on the first backbone's hard labels
    rules: tuple[str, ...] = RULES
    folds: int = 5
    seed: int = 0
    views: int = VIEWS
    heads: HeadTraining = HeadTraining()
    limit: int = 0  # only the first N training photos (a smoke run); 0: all
    cache: Path | None = None  # default: .cache/recipes
    out: Path | None = None  # default: bench/ (a --limit run: .run/recipes/)

    def recipes(self, partitions: int) -> list[Recipe]:
        """Every backbone with every smoothing, the prior weights on the first backbone's hard
        labels after its smoothings; BenchError where a smoothing has not one tau per
        partition."""
        for taus in self.taus_km:
            if len(taus) != partitions or min(taus) < 0:
                raise BenchError(
                    f"label smoothing {list(taus)}: need one tau >= 0 km per partition "
                    f"({partitions}, coarse -> fine)"
                )
        hard = (0.0,) * partitions
        recipes = []
        for k, backbone in enumerate(self.backbones):
            recipes += [Recipe(backbone, tuple(taus)) for taus in self.taus_km]
            if k == 0:
                recipes += [Recipe(backbone, hard, a) for a in self.prior_weights if a]
        return list(dict.fromkeys(recipes))  # each once

    def output_dir(self) -> Path:
        """bench/, or .run/recipes/ for a --limit run (its numbers are no result)."""
        if self.out is not None:
            return self.out
        return runs_dir() / "recipes" if self.limit else Path("bench")


@dataclass(frozen=True, eq=False)
class Photos:
    """The training photos of the demo split, in manifest order."""

    image_ids: list[str]
    lat: Floats  # (N,) degrees
    lon: Floats  # (N,)
    authors: list[str]  # (N,)

    def __len__(self) -> int:
        return len(self.image_ids)


@dataclass(frozen=True)
class Split:
    """The split the proof works on: the training photos, and what is set aside."""

    train: Photos
    images: Path
    partition_specs: tuple[PartitionSpec, ...]
    validation_photos: int  # never used
    validation_photographers: int


def demo_split(options: RecipeOptions) -> Split:
    """The demo config's split (the trainer's own prepare()); its training photos only."""
    dev = shared_data_dir() / "im2gps3k-dev"
    manifest = options.manifest or dev / "dev.csv"
    images = options.images or dev / "images"
    if not manifest.is_file() or not images.is_dir():
        raise BenchError(
            f"the dev photos are not at {manifest} and {images}: set {SHARED_DATA_ENV} (the "
            "reference data folder) or pass --manifest and --images"
        )
    try:
        config = load_config(options.config)
        config = dataclasses.replace(config, manifest=str(manifest), images=str(images))
        data = prepare(config)
    except TrainingError as exc:
        raise BenchError(f"the demo split of {options.config}: {exc}") from exc
    train = data.train
    if options.limit:
        train = train.subset(np.arange(min(options.limit, len(train)), dtype=np.int64))
    if train.authors is None:
        raise BenchError(f"{manifest} has no AUTHOR column: folds need photographers")
    return Split(
        train=Photos(list(train.image_ids), train.lat, train.lon, list(train.authors)),
        images=images,
        partition_specs=tuple(_specs(config)),
        validation_photos=len(data.val),
        validation_photographers=len(set(data.val.authors or [])),
    )


def _specs(config: TrainConfig) -> list[PartitionSpec]:
    specs = config.partition_specs()
    if not specs:
        raise BenchError("the config has no partitions: nothing to locate photos with")
    return specs


def author_folds(authors: Sequence[str], folds: int, seed: int = 0) -> Ints:
    """(N,) fold of each photo: the sorted photographers in a seeded random order, the k-th in
    fold k % folds, so that no photographer's photos lie in two folds."""
    names = np.unique(np.asarray(authors, dtype=object)).astype(str)
    if folds < 2 or names.size < folds:
        raise BenchError(f"{folds} folds need at least {max(folds, 2)} photographers")
    order = names[np.random.default_rng(seed).permutation(names.size)]
    fold_of = {name: k % folds for k, name in enumerate(order)}
    return np.array([fold_of[a] for a in authors], dtype=np.int64)


# --- features ---------------------------------------------------------------------------------


def backbone_input(backbone: str) -> tuple[int, int]:
    """(crop, resize) of a backbone: BACKBONE_INPUTS, else its registered size and 256/224."""
    if backbone in BACKBONE_INPUTS:
        return BACKBONE_INPUTS[backbone]
    size = backbone_info(backbone).input_size
    return size, round(size * 256 / 224)


def feature_cache(root: Path, backbone: str, views: int) -> Path:
    """The cache file of a backbone's features: one per backbone, input and number of views."""
    size, resize = backbone_input(backbone)
    return root / f"{backbone}_{size}_{resize}_{views}views.npz"


def features(
    backbone: str, photos: Photos, images: Path, views: int, cache: Path
) -> npt.NDArray[np.float16]:
    """(N, views, D) pooled features of the photos, from the cache where it has them; the others
    are extracted and added to it."""
    path = feature_cache(cache, backbone, views)
    cached: dict[str, npt.NDArray[np.float16]] = {}
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                cached = dict(zip(stored["image_ids"].tolist(), stored["features"], strict=True))
        except (OSError, ValueError, KeyError) as exc:
            raise BenchError(f"unreadable features cache {path} ({exc}): remove it") from exc
    missing = [image_id for image_id in photos.image_ids if image_id not in cached]
    if missing:
        log.info("%s: extracting %d photos' features (%s)", backbone, len(missing), path)
        extracted = extract_features(backbone, images, missing, views)
        cached.update(zip(missing, extracted, strict=True))
        _save(path, cached)
    return np.stack([cached[image_id] for image_id in photos.image_ids])


def _save(path: Path, features_of: Mapping[str, npt.NDArray[np.float16]]) -> None:
    """Write the cache whole, then move it into place (an interrupted run leaves the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        np.savez(
            handle,
            image_ids=np.array(list(features_of), dtype=str),
            features=np.stack(list(features_of.values())),
        )
    os.replace(partial, path)


def extract_features(
    backbone: str, images: Path, image_ids: Sequence[str], views: int
) -> npt.NDArray[np.float16]:
    """(N, views, D) features of the frozen ImageNet backbone: view 0 the evaluation transform
    (resize, centre crop), the others the training augmentation. Photos are decoded as the
    trainer decodes them; each photo's augmentations are seeded by its id, so they do not depend
    on which photos were extracted with it."""
    size, resize = backbone_input(backbone)
    info = backbone_info(backbone)
    centre = eval_transform(size, resize, info.mean, info.std)
    augment = train_transform(size, mean=info.mean, std=info.std)
    network, dim = create_backbone(backbone, True)
    network.eval()
    out = np.zeros((len(image_ids), views, dim), dtype=np.float16)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        for start in range(0, len(image_ids), FEATURE_BATCH):
            batch = image_ids[start : start + FEATURE_BATCH]
            crops = []
            for image_id in batch:
                try:
                    image = load_image(images / image_id, min_side=resize)
                except ImageError as exc:
                    raise BenchError(f"cannot decode {images / image_id}: {exc}") from exc
                torch.manual_seed(zlib.crc32(image_id.encode()))
                crops += [centre(image)] + [augment(image) for _ in range(views - 1)]
            pooled = network(torch.stack(crops)).reshape(len(batch), views, dim)
            out[start : start + len(batch)] = pooled.numpy()
            done = start + len(batch)
            if done % (10 * FEATURE_BATCH) == 0 or done == len(image_ids):
                elapsed = time.perf_counter() - started
                log.info(
                    "%s: %d/%d photos, %.1f photos/s",
                    backbone,
                    done,
                    len(image_ids),
                    done / elapsed,
                )
    return out


# --- one fold ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Fold:
    """One fold: its training photos' partitions and classes, and the photos it holds out."""

    index: int
    train: Ints  # rows of Photos the heads learn from
    held_out: Ints  # rows they answer
    partitions: tuple[Partition, ...]  # coarse -> fine, from the fold's training photos
    hierarchy: Hierarchy
    classes: Ints  # (len(train), P) class of each training photo, -1 where none
    held_out_fine: Ints  # (len(held_out),) fine class holding each held-out photo, -1 where none

    @property
    def fine(self) -> Partition:
        """The finest partition: the cells the answers are made of."""
        return self.partitions[-1]


def make_fold(photos: Photos, fold_ids: Ints, index: int, specs: Sequence[PartitionSpec]) -> Fold:
    """Fold `index`: partitions built from the other folds' photos, as a run builds its own."""
    train = np.flatnonzero(fold_ids != index)
    held_out = np.flatnonzero(fold_ids == index)
    partitions = tuple(build_partitions(photos.lat[train], photos.lon[train], specs))
    empty = [p.name for p in partitions if len(p) == 0]
    if empty:
        raise BenchError(
            f"fold {index}: {len(train)} training photos leave {', '.join(empty)} without a "
            "cell; use more photos"
        )
    held_lat, held_lon = photos.lat[held_out], photos.lon[held_out]
    return Fold(
        index=index,
        train=train,
        held_out=held_out,
        partitions=partitions,
        hierarchy=build_hierarchy(partitions),
        classes=assign_classes(photos.lat[train], photos.lon[train], partitions),
        held_out_fine=assign_classes(held_lat, held_lon, partitions[-1:])[:, 0],
    )


class Heads(nn.Module):
    """One linear head per partition on the pooled features, dropout before them."""

    def __init__(self, dim: int, partitions: Sequence[Partition], dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({p.name: nn.Linear(dim, len(p)) for p in partitions})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, D) features -> head -> (B, n_classes) logits."""
        x = self.dropout(features)
        return {name: head(x) for name, head in self.heads.items()}


def soft_targets(
    partitions: Sequence[Partition], taus_km: Sequence[float], lat: Floats, lon: Floats
) -> dict[str, torch.Tensor] | None:
    """head -> (N, n_classes) haversine soft targets of photos at (lat, lon), for the heads
    whose tau is above 0; None for hard labels (every tau 0)."""
    smoothing = HaversineSmoothing.for_partitions(partitions, taus_km)
    if smoothing is None:
        return None
    coords = torch.from_numpy(np.stack([lat, lon], axis=1))
    return smoothing.targets(coords, torch.device("cpu"))


def train_heads(
    features: torch.Tensor,
    partitions: Sequence[Partition],
    classes: Ints,
    soft: Mapping[str, torch.Tensor] | None,
    training: HeadTraining,
    seed: int,
) -> Heads:
    """Heads trained on (N, V, D) features, each step a batch of photos in one of their augmented
    views (views 1..V-1; view 0 where there is no other), epoch after epoch."""
    photos, views, dim = features.shape
    first = 1 if views > 1 else 0
    labels = {p.name: torch.from_numpy(classes[:, j]) for j, p in enumerate(partitions)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = Heads(dim, partitions, training.dropout)
        optimizer = torch.optim.AdamW(
            heads.parameters(), lr=training.lr, weight_decay=training.weight_decay
        )
        heads.train()
        for _ in range(training.epochs):
            order = torch.randperm(photos)
            view = torch.randint(first, views, (photos,))
            for start in range(0, photos, training.batch_size):
                rows = order[start : start + training.batch_size]
                logits = heads(features[rows, view[rows]])
                loss, _ = multitask_loss(
                    logits,
                    {name: target[rows] for name, target in labels.items()},
                    soft=None if soft is None else {h: t[rows] for h, t in soft.items()},
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return heads.eval()


def hierarchical_log_scores(
    heads: Heads, features: torch.Tensor, hierarchy: Hierarchy
) -> torch.Tensor:
    """(N, D) features -> (N, n_fine) log of the product of the ancestors' probabilities."""
    with torch.no_grad():
        logits = heads(features)
    return hierarchical_scores([logits[p.name] for p in hierarchy.partitions], hierarchy.ancestors)


def calibrated(scores: torch.Tensor, fine: Ints) -> tuple[Floats, float]:
    """(N, n_fine) probabilities softmax(scores / T) and T, the temperature of least NLL of the
    fine class holding each photo (photos in no cell left out)."""
    temperature = fit_temperature(scores, torch.from_numpy(fine))
    probabilities = (scores.double() / temperature).softmax(dim=-1).numpy()
    return probabilities, temperature


def prior_shift(fine: Partition, mp16: Partition) -> Floats:
    """(n_fine,) log prior_mp16 - log prior_train: MP-16's photos per fine cell (its published
    cells' counts, each at its mean point, +1) against the fold's training photos (+0.5)."""
    cells = assign_classes(mp16.lat_mean, mp16.lon_mean, [fine])[:, 0]
    inside = cells >= 0
    mp16_counts = np.bincount(cells[inside], weights=mp16.counts[inside], minlength=len(fine)) + 1
    train_counts = fine.counts.astype(np.float64) + 0.5
    return np.log(mp16_counts / mp16_counts.sum()) - np.log(train_counts / train_counts.sum())


def answers(fine: Partition, probabilities: Floats, rules: Sequence[str]) -> dict[str, Floats]:
    """answer -> (N, 2) latitude and longitude: the top cell's point, then each rule's guess."""
    top = probabilities.argmax(axis=1)
    out = {TOP_CELL: np.stack([fine.lat_mean[top], fine.lon_mean[top]], axis=1)}
    for text in rules:
        out[text] = guess_points(fine, probabilities, GuessRule.parse(text))
    return out


def expected_calibration_error(
    fine: Partition, probabilities: Floats, lat: Floats, lon: Floats, true_class: Ints
) -> float:
    """ECE of the top-1 fine cell (10 equal bins; right where the cell contains the photo)."""
    best = probabilities.argmax(axis=1)
    rows = np.arange(len(best))
    p_true = np.where(true_class >= 0, probabilities[rows, np.maximum(true_class, 0)], np.nan)
    hits = top1_cell_hits(fine, best, lat, lon)
    return reliability(probabilities.max(axis=1), hits, p_true).ece


# --- the cross-validation -------------------------------------------------------------------


@dataclass
class _Tally:
    """Out-of-fold errors per (recipe, answer), ECEs and temperatures per recipe and fold."""

    photos: int
    errors: dict[tuple[str, str], Floats] = dataclasses.field(default_factory=dict)
    ece: dict[str, list[float]] = dataclasses.field(default_factory=lambda: defaultdict(list))
    temperature: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: defaultdict(list)
    )

    def add(
        self, recipe: str, answer: str, rows: Ints, lat: Floats, lon: Floats, at: Floats
    ) -> None:
        """The errors of answering the points `at` (N, 2) for photos `rows` at (lat, lon)."""
        errors = self.errors.setdefault((recipe, answer), np.full(self.photos, np.nan))
        errors[rows] = haversine_km(lat, lon, at[:, 0], at[:, 1])


def cross_validate(
    photos: Photos,
    features_of: Mapping[str, npt.NDArray[np.floating[Any]]],
    recipes: Sequence[Recipe],
    specs: Sequence[PartitionSpec],
    *,
    folds: int = 5,
    seed: int = 0,
    training: HeadTraining = HeadTraining(),
    rules: Sequence[str] = RULES,
    mp16: Partition | None = None,
) -> dict[str, Any]:
    """Out-of-fold answers of every photo by every recipe and baseline: `{"rows": [...],
    "folds": [...]}` (rows as in bench/recipes.json). `features_of`: backbone -> (N, V, D)."""
    with _one_thread():
        return _cross_validate(
            photos, features_of, recipes, specs, folds, seed, training, rules, mp16
        )


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread: the heads' tensors are tiny, and on a shared machine a second
    thread waiting for a busy core makes each step milliseconds slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _cross_validate(
    photos: Photos,
    features_of: Mapping[str, npt.NDArray[np.floating[Any]]],
    recipes: Sequence[Recipe],
    specs: Sequence[PartitionSpec],
    folds: int,
    seed: int,
    training: HeadTraining,
    rules: Sequence[str],
    mp16: Partition | None,
) -> dict[str, Any]:
    if any(r.prior_weight for r in recipes) and mp16 is None:
        raise BenchError("the MP-16 prior recipes need the MP-16 cells (mp16)")
    fold_ids = author_folds(photos.authors, folds, seed)
    tally = _Tally(len(photos))
    fold_notes = []
    by_heads: dict[tuple[str, tuple[float, ...]], list[Recipe]] = defaultdict(list)
    for recipe in recipes:
        by_heads[recipe.heads].append(recipe)
    stacks = {
        backbone: torch.from_numpy(np.asarray(features_of[backbone], dtype=np.float32))
        for backbone in dict.fromkeys(r.backbone for r in recipes)
    }
    for k in range(folds):
        started = time.perf_counter()
        fold = make_fold(photos, fold_ids, k, specs)
        rows, fine = fold.held_out, fold.fine
        lat, lon = photos.lat[rows], photos.lon[rows]
        _baselines(tally, fold, photos, rules)
        shift = None if mp16 is None else torch.from_numpy(prior_shift(fine, mp16))
        for (backbone, taus), sharing in by_heads.items():
            stack = stacks[backbone]
            train_lat, train_lon = photos.lat[fold.train], photos.lon[fold.train]
            heads = train_heads(
                stack[fold.train],
                fold.partitions,
                fold.classes,
                soft_targets(fold.partitions, taus, train_lat, train_lon),
                training,
                seed=seed * 1000 + k,
            )
            scores = hierarchical_log_scores(heads, stack[rows, 0], fold.hierarchy)
            plain, temperature = calibrated(scores, fold.held_out_fine)
            for recipe in sharing:
                probabilities = plain
                if recipe.prior_weight and shift is not None:
                    adjusted = torch.from_numpy(np.log(plain)) + recipe.prior_weight * shift
                    probabilities, temperature = calibrated(adjusted, fold.held_out_fine)
                tally.temperature[recipe.name].append(temperature)
                tally.ece[recipe.name].append(
                    expected_calibration_error(fine, probabilities, lat, lon, fold.held_out_fine)
                )
                for answer, points in answers(fine, probabilities, rules).items():
                    tally.add(recipe.name, answer, rows, lat, lon, points)
        authors = len({photos.authors[r] for r in rows})
        fold_notes.append({"photos": len(rows), "photographers": authors, "fine_cells": len(fine)})
        log.info(
            "fold %d/%d: %d photos of %d photographers held out, %d fine cells, %.0f s",
            k + 1,
            folds,
            len(rows),
            authors,
            len(fine),
            time.perf_counter() - started,
        )
    return {"rows": _rows(tally, recipes), "folds": fold_notes}


def _baselines(tally: _Tally, fold: Fold, photos: Photos, rules: Sequence[str]) -> None:
    """The constant points and the training prior of the fold's training photos."""
    rows, fine = fold.held_out, fold.fine
    lat, lon = photos.lat[rows], photos.lon[rows]
    points = constant_points(photos.lat[fold.train], photos.lon[fold.train])
    for name in CONSTANTS:
        tally.add(CONSTANT, name, rows, lat, lon, np.tile(points[name], (len(rows), 1)))
    prior = fine.counts.astype(np.float64) / fine.counts.sum()
    for answer, at in answers(fine, prior[None, :], rules).items():
        tally.add(TRAINING_PRIOR, answer, rows, lat, lon, np.tile(at, (len(rows), 1)))


def _rows(tally: _Tally, recipes: Sequence[Recipe]) -> list[dict[str, Any]]:
    """One row per (recipe, answer): the baselines, then the recipes in their order."""
    by_name = {r.name: r for r in recipes}
    rank = {name: k for k, name in enumerate([CONSTANT, TRAINING_PRIOR, *by_name])}
    rows = []
    for (name, answer), errors in sorted(tally.errors.items(), key=lambda i: rank[i[0][0]]):
        row: dict[str, Any] = {"recipe": name, "answer": answer}
        recipe = by_name.get(name)
        if recipe is not None:
            row |= {
                "backbone": recipe.backbone,
                "label_smoothing_km": list(recipe.taus_km),
                "mp16_prior_weight": recipe.prior_weight,
            }
        row |= evaluate_distances(errors).to_json()
        if recipe is not None:
            row |= {
                "ece": float(np.mean(tally.ece[name])),
                "ece_folds": tally.ece[name],
                "temperature_folds": tally.temperature[name],
            }
        rows.append(row)
    return rows


# --- the command ------------------------------------------------------------------------------


def read_mp16(path: Path) -> Partition:
    """The published MP-16 cells (GeoEstimation's cells_50_1000.csv)."""
    if not path.is_file():
        raise BenchError(
            f"the MP-16 cells are not at {path}: set {SHARED_DATA_ENV} (the reference data "
            "folder), or run without the prior recipes (--prior-weights with no value)"
        )
    try:
        return read_cells_csv(path)
    except TrainingError as exc:
        raise BenchError(str(exc)) from exc


def run(options: RecipeOptions = RecipeOptions()) -> dict[str, Any]:
    """Extract (or read the cached) features, cross-validate every recipe, write recipes.json."""
    if options.views < 1 or options.folds < 2:
        raise BenchError("need at least 1 view and 2 folds")
    try:
        for text in options.rules:
            GuessRule.parse(text)
        for backbone in options.backbones:
            backbone_input(backbone)
    except TrainingError as exc:
        raise BenchError(str(exc)) from exc
    split = demo_split(options)
    photos = split.train
    recipes = options.recipes(len(split.partition_specs))
    mp16 = None
    if any(r.prior_weight for r in recipes):
        mp16 = read_mp16(shared_data_dir() / MP16_CELLS)
    cache = options.cache or cache_dir() / "recipes"
    seconds: dict[str, Any] = {"features": {}}
    features_of = {}
    for backbone in dict.fromkeys(r.backbone for r in recipes):
        started = time.perf_counter()
        features_of[backbone] = features(backbone, photos, split.images, options.views, cache)
        seconds["features"][backbone] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    result = cross_validate(
        photos,
        features_of,
        recipes,
        split.partition_specs,
        folds=options.folds,
        seed=options.seed,
        training=options.heads,
        rules=options.rules,
        mp16=mp16,
    )
    seconds["cross_validation"] = round(time.perf_counter() - started, 1)
    output = {
        "protocol": _protocol(options, split, recipes, result["folds"], mp16),
        "seconds": seconds,
        "rows": result["rows"],
    }
    out = options.output_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipes.json").write_text(json.dumps(output, indent=2) + "\n")
    log.info("results in %s", out / "recipes.json")
    return output


def _protocol(
    options: RecipeOptions,
    split: Split,
    recipes: Sequence[Recipe],
    folds: list[dict[str, Any]],
    mp16: Partition | None,
) -> dict[str, Any]:
    photos = split.train
    return {
        "config": str(options.config),
        "photos": len(photos),
        "photographers": len(set(photos.authors)),
        "limit": options.limit,
        "validation_photos_unused": split.validation_photos,
        "validation_photographers_unused": split.validation_photographers,
        "folds": options.folds,
        "fold_seed": options.seed,
        "fold_sizes": folds,
        "partitions": [[s.tau_min, s.tau_max] for s in split.partition_specs],
        "features": {
            backbone: {
                "input_size": backbone_input(backbone)[0],
                "resize": backbone_input(backbone)[1],
                "views": options.views,
                "note": "frozen ImageNet backbone, pooled; view 0 the centre crop the held-out "
                "photos are answered from, the others training augmentations the heads learn",
            }
            for backbone in dict.fromkeys(r.backbone for r in recipes)
        },
        "heads": dataclasses.asdict(options.heads),
        "temperature": "one per recipe and fold, fitted on the fold's held-out photos (least "
        "NLL of the fine cell holding the photo), refitted after the MP-16 prior adjustment",
        "mp16_prior": None
        if mp16 is None
        else {
            "cells": str(MP16_CELLS),
            "photos": mp16.num_images,
            "rule": "log p + a (log prior_mp16 - log prior_train); prior_mp16: the cells' counts "
            "summed into the fold's fine cells by their mean points, +1; prior_train: the "
            "fold's training photos per fine cell, +0.5",
        },
        "rules": list(options.rules),
        "ece": "mean over the folds; 10 equal bins of the top-1 probability, right where the "
        "top-1 fine cell contains the photo",
        "accuracy": f"percent of the {len(photos)} training photos, each answered by the fold "
        f"holding it out, within {', '.join(str(t) for t in THRESHOLDS_KM)} km",
    }


def report(result: Mapping[str, Any]) -> str:
    """A plain table for people: one line per recipe and answer, baselines first."""
    protocol = result["protocol"]
    header = (
        f"{'recipe':<36} {'answer':<18}"
        + "".join(f"{str(t) + ' km':>8}" for t in THRESHOLDS_KM)
        + f"{'median km':>11}{'ECE':>7}"
    )
    lines = [
        f"{protocol['folds']}-fold cross-validation by photographer over the {protocol['photos']} "
        f"training photos ({protocol['photographers']} photographers) of {protocol['config']}; "
        f"its {protocol['validation_photos_unused']} validation photos unused. Accuracy in %.",
        header,
    ]
    previous = None
    for row in result["rows"]:
        if previous is not None and row["recipe"] != previous:
            lines.append("")
        previous = row["recipe"]
        ece = row.get("ece")
        lines.append(
            f"{row['recipe']:<36} {row['answer']:<18}"
            + "".join(f"{row['accuracy'][str(t)]:8.1f}" for t in THRESHOLDS_KM)
            + f"{row['median_km']:11.0f}"
            + (f"{ece:7.3f}" if ece is not None else f"{'':7}")
        )
    return "\n".join(lines)
