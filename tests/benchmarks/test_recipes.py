"""The recipes proof: folds by photographer, smoothing that reaches the heads, baselines in the
table, features extracted once and cached, the validation photographers never touched."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from benchmarks import recipes
from benchmarks.commands import main
from benchmarks.exceptions import BenchError
from benchmarks.recipes import HeadTraining, Photos, Recipe, RecipeOptions
from geoverdict_training.data.labels import assign_classes
from geoverdict_training.geo.partitions import PartitionSpec, build_partitions
from geoverdict_training.train.config import load_config
from geoverdict_training.train.run_data import prepare

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "training" / "configs" / "demo.yaml"
CITIES = np.array(
    [[48.86, 2.35], [40.71, -74.0], [35.68, 139.69], [-33.87, 151.21], [-23.55, -46.63]]
)
SPECS = (PartitionSpec(5, 60), PartitionSpec(5, 25))
HARD = (0.0, 0.0)
SMOOTH = (1000.0, 500.0)


def synthetic(per_author: int = 8, authors_per_city: int = 4, seed: int = 0) -> tuple[Photos, dict]:
    """Photos around five cities, each photographer in one city, and (N, 3, 16) features that
    say the city through noise: a model can learn them, a constant cannot."""
    rng = np.random.default_rng(seed)
    city = np.repeat(np.arange(len(CITIES)), per_author * authors_per_city)
    n = city.size
    lat = CITIES[city, 0] + rng.normal(0, 0.3, n)
    lon = CITIES[city, 1] + rng.normal(0, 0.3, n)
    authors = [f"a{k // per_author}" for k in range(n)]
    signal = np.zeros((n, 16))
    signal[np.arange(n), city] = 3.0
    features = signal[:, None, :] + rng.normal(0, 1.0, (n, 3, 16))
    photos = Photos([f"p{k}.jpg" for k in range(n)], lat, lon, authors)
    return photos, {"efficientnet_lite0": features.astype(np.float16)}


def test_folds_keep_each_photographer_on_one_side() -> None:
    authors = [f"a{k % 23}" for k in range(200)]
    folds = recipes.author_folds(authors, 5, seed=3)
    assert set(folds.tolist()) == set(range(5))
    for author in set(authors):
        assert len({int(f) for a, f in zip(authors, folds, strict=True) if a == author}) == 1
    assert np.array_equal(folds, recipes.author_folds(authors, 5, seed=3))
    with pytest.raises(BenchError, match="photographers"):
        recipes.author_folds(["a", "b"], 5)


def test_smoothing_changes_the_heads_targets_and_what_they_learn() -> None:
    photos, features = synthetic()
    partitions = build_partitions(photos.lat, photos.lon, SPECS)
    classes = assign_classes(photos.lat, photos.lon, partitions)
    assert recipes.soft_targets(partitions, HARD, photos.lat, photos.lon) is None
    soft = recipes.soft_targets(partitions, SMOOTH, photos.lat, photos.lon)
    assert soft is not None and set(soft) == {p.name for p in partitions}
    for j, p in enumerate(partitions):
        target = soft[p.name]
        assert torch.allclose(target.sum(dim=1), torch.ones(len(photos)), atol=1e-5)
        labelled = classes[:, j] >= 0
        one_hot = torch.nn.functional.one_hot(torch.from_numpy(classes[labelled, j]), len(p))
        assert (target[labelled] - one_hot).abs().max() > 1e-3  # not the hard label
        # the most weight still lies near the photo: mostly on its own cell
        assert (target.argmax(dim=1).numpy()[labelled] == classes[labelled, j]).mean() > 0.5
    # a city's fine cells are within tau of each other: the target spreads over them
    assert float(soft[partitions[-1].name].max(dim=1).values.mean()) < 0.9
    stack = torch.from_numpy(features["efficientnet_lite0"].astype(np.float32))
    hard_heads = recipes.train_heads(stack, partitions, classes, None, HeadTraining(), seed=0)
    soft_heads = recipes.train_heads(stack, partitions, classes, soft, HeadTraining(), seed=0)
    again = recipes.train_heads(stack, partitions, classes, None, HeadTraining(), seed=0)
    key = f"heads.{partitions[-1].name}.weight"
    weights = [h.state_dict()[key] for h in (hard_heads, soft_heads, again)]
    assert torch.equal(weights[0], weights[2])  # seeded
    assert not torch.allclose(weights[0], weights[1])


def test_cross_validation_answers_every_photo_and_beats_the_baselines_on_learnable_data() -> None:
    photos, features = synthetic()
    chosen = [Recipe("efficientnet_lite0", HARD), Recipe("efficientnet_lite0", SMOOTH)]
    result = recipes.cross_validate(
        photos,
        features,
        chosen,
        SPECS,
        folds=4,
        training=HeadTraining(lr=3e-2),  # a few steps on 160 photos: learn fast
        rules=("expected_distance",),
    )
    rows = {(r["recipe"], r["answer"]): r for r in result["rows"]}
    answers = [recipes.TOP_CELL, "expected_distance"]
    expected = {(recipes.CONSTANT, "densest"), (recipes.CONSTANT, "geodesic_median")}
    expected |= {(recipes.TRAINING_PRIOR, a) for a in answers}
    expected |= {(r.name, a) for r in chosen for a in answers}
    assert set(rows) == expected
    order = [r["recipe"] for r in result["rows"]]
    assert order[:2] == [recipes.CONSTANT] * 2 and order[-1] == chosen[-1].name
    assert all(r["n"] == len(photos) for r in rows.values())  # out of fold, every photo once
    assert len(result["folds"]) == 4
    assert sum(f["photos"] for f in result["folds"]) == len(photos)
    for recipe in chosen:
        row = rows[(recipe.name, "expected_distance")]
        assert 0 <= row["ece"] <= 1 and len(row["ece_folds"]) == 4
        assert all(t > 0 for t in row["temperature_folds"])
        # five cities thousands of km apart: the features say which, the prior cannot
        assert (
            row["accuracy"]["200"] > rows[(recipes.TRAINING_PRIOR, "top cell")]["accuracy"]["200"]
        )
        assert row["accuracy"]["200"] > rows[(recipes.CONSTANT, "densest")]["accuracy"]["200"]


def test_recipes_and_their_names() -> None:
    options = RecipeOptions(
        backbones=("efficientnet_lite0", "efficientnet_lite2"),
        taus_km=((0.0, 0.0, 0.0), (2000.0, 1000.0, 500.0)),
        prior_weights=(0.5,),
    )
    names = [r.name for r in options.recipes(3)]
    assert names == [
        "lite0 hard",
        "lite0 tau 2000/1000/500",
        "lite0 hard + MP-16 prior x0.5",
        "lite2 hard",
        "lite2 tau 2000/1000/500",
    ]
    with pytest.raises(BenchError, match="one tau"):
        options.recipes(2)
    with pytest.raises(SystemExit):
        main(["recipes", "--taus", "500,km"])


@pytest.mark.shared_data
def test_a_run_touches_training_photographers_only_and_prints_the_baselines(
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    asked: list[str] = []

    def fake_features(
        backbone: str, photos: Photos, images: Path, views: int, cache: Path
    ) -> npt.NDArray[np.float16]:
        asked.extend(photos.image_ids)
        rng = np.random.default_rng(0)
        return rng.normal(0, 1, (len(photos), views, 8)).astype(np.float16)

    monkeypatch.setattr(recipes, "features", fake_features)
    argv = ["recipes", "--config", str(DEMO), "--backbone", "efficientnet_lite0"]
    argv += ["--taus", "0,0,0", "--taus", "500,500,500", "--prior-weights", "1"]
    argv += ["--rules", "expected_distance", "--folds", "3", "--views", "2", "--limit", "300"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    result = json.loads((tmp_path / "recipes.json").read_text())
    val = prepare(
        load_config(
            DEMO,
            [
                f"manifest={shared_data / 'im2gps3k-dev' / 'dev.csv'}",
                f"images={shared_data / 'im2gps3k-dev' / 'images'}",
            ],
        )
    ).val
    assert len(asked) == 300 and not set(asked) & set(val.image_ids)
    assert result["protocol"]["validation_photos_unused"] == len(val) > 0
    assert table.strip() == recipes.report(result).strip()
    for name in ("densest", "geodesic_median", recipes.TRAINING_PRIOR, "MP-16 prior x1"):
        assert name in table


@pytest.mark.shared_data
def test_features_are_extracted_once_then_read_from_the_cache(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = shared_data / "im2gps3k-dev"
    ids = sorted(p.name for p in (dev / "images").iterdir())[:3]

    def photos(names: Sequence[str]) -> Photos:
        zeros = np.zeros(len(names))
        return Photos(list(names), zeros, zeros, ["a"] * len(names))

    first = recipes.features("efficientnet_lite0", photos(ids[:2]), dev / "images", 2, tmp_path)
    assert first.shape == (2, 2, 1280) and np.isfinite(first.astype(np.float32)).all()
    assert not np.array_equal(first[:, 0], first[:, 1])  # a centre crop, then an augmentation
    extracted: list[str] = []
    original = recipes.extract_features

    def counting(backbone: str, images: Path, image_ids: Sequence[str], views: int):  # type: ignore[no-untyped-def]
        extracted.extend(image_ids)
        return original(backbone, images, image_ids, views)

    monkeypatch.setattr(recipes, "extract_features", counting)
    second = recipes.features("efficientnet_lite0", photos(ids[1:]), dev / "images", 2, tmp_path)
    assert extracted == [ids[2]]  # the cached photo is read, not extracted again
    assert np.array_equal(second[0], first[1])
    # each photo's augmentation is seeded by its id: the same views alone as beside another
    alone = original("efficientnet_lite0", dev / "images", [ids[1]], 2)
    assert np.allclose(alone[0].astype(np.float32), first[1].astype(np.float32), atol=0.05)
