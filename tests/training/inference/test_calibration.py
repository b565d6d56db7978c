"""Temperature scaling: overconfident logits are cooled, calibrated ones left alone, the
hierarchical product gets its own temperature only where it needs one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoverdict_training.exceptions import ConfigError, TensorError
from geoverdict_training.inference.calibration import (
    T_MAX,
    Calibration,
    fit_calibration,
    fit_temperature,
    nll,
)
from geoverdict_training.inference.hierarchical import hierarchical_probabilities


def _calibrated_set(n: int = 4000, classes: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Logits and labels drawn from softmax(logits): calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, classes))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return torch.from_numpy(logits), torch.from_numpy(labels)


def test_overconfident_logits_get_a_temperature_that_lowers_the_nll() -> None:
    logits, labels = _calibrated_set()
    overconfident = 4.0 * logits  # the same ranking, four times too sure
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(4.0, rel=0.1)
    assert nll(overconfident, labels, t) < nll(overconfident, labels) - 0.5
    assert nll(overconfident, labels, t) == pytest.approx(nll(logits, labels), abs=0.01)


def test_calibrated_logits_are_left_alone() -> None:
    logits, labels = _calibrated_set(seed=1)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.08)


def test_underconfident_logits_are_sharpened() -> None:
    logits, labels = _calibrated_set(seed=2)
    assert fit_temperature(logits / 3.0, labels) == pytest.approx(1 / 3, rel=0.1)


def test_fitting_is_deterministic_and_ignores_unlabelled_rows() -> None:
    logits, labels = _calibrated_set(n=500, seed=3)
    t = fit_temperature(3.0 * logits, labels)
    assert fit_temperature(3.0 * logits, labels) == t
    padded = torch.cat([3.0 * logits, torch.full((50, 8), 30.0)])
    padded_labels = torch.cat([labels, torch.full((50,), -1)])
    assert fit_temperature(padded, padded_labels) == pytest.approx(t, rel=1e-9)
    assert fit_temperature(logits, torch.full((500,), -1)) == 1.0


def test_separable_data_runs_to_the_bound_rather_than_diverging() -> None:
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(logits, torch.tensor([0, 1])) == pytest.approx(0.01, rel=0.01)
    assert fit_temperature(logits, torch.tensor([1, 0])) == pytest.approx(T_MAX, rel=0.01)


def test_bad_shapes_and_labels_are_refused() -> None:
    with pytest.raises(TensorError, match=r"\(N, n\) logits"):
        fit_temperature(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TensorError, match="out of range"):
        fit_temperature(torch.zeros(2, 3), torch.tensor([0, 3]))


def _two_identical_partitions(seed: int = 4) -> tuple[dict[str, torch.Tensor], ...]:
    """A coarse and a fine partition of the same 8 cells saying the same calibrated thing: their
    product squares each probability, twice too sure."""
    logits, labels = _calibrated_set(seed=seed)
    heads = {"coarse": logits, "fine": logits.clone()}
    return heads, {"coarse": labels, "fine": labels}


def test_a_product_of_calibrated_partitions_gets_its_own_temperature() -> None:
    logits, labels = _two_identical_partitions()
    ancestors = np.stack([np.arange(8), np.arange(8)], axis=1)
    calibration = fit_calibration(logits, labels, ["coarse", "fine"], ancestors)
    assert calibration.temperature("coarse") == pytest.approx(1.0, abs=0.08)
    assert calibration.hierarchy == pytest.approx(2.0, rel=0.1)  # undoes the squaring
    product = hierarchical_probabilities([logits["coarse"], logits["fine"]], ancestors)
    calibrated = hierarchical_probabilities(
        [logits["coarse"], logits["fine"]], ancestors, calibration.hierarchy
    )
    fine = labels["fine"]
    assert -calibrated[torch.arange(len(fine)), fine].log().mean() < (
        -product[torch.arange(len(fine)), fine].log().mean() - 0.1
    )


def test_a_single_partition_needs_no_hierarchy_temperature() -> None:
    logits, labels = _calibrated_set(seed=5)
    calibration = fit_calibration(
        {"fine": 2.0 * logits}, {"fine": labels}, ["fine"], np.arange(8)[:, None]
    )
    assert calibration.temperature("fine") == pytest.approx(2.0, rel=0.1)
    assert calibration.hierarchy == 1.0


def test_scaling_divides_each_head_and_leaves_others_alone() -> None:
    calibration = Calibration({"a": 2.0}, hierarchy=1.5)
    scaled = calibration.scale({"a": torch.tensor([[4.0, 2.0]]), "b": torch.tensor([[1.0, 0.0]])})
    assert scaled["a"].tolist() == [[2.0, 1.0]]
    assert scaled["b"].tolist() == [[1.0, 0.0]]
    assert calibration.temperature("b") == 1.0


def test_calibration_round_trips_and_refuses_nonsense() -> None:
    calibration = Calibration({"a": 2.5, "scene_s3": 1.2}, hierarchy=3.0)
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    with pytest.raises(ConfigError, match="must be > 0"):
        Calibration({"a": 0.0})
    with pytest.raises(ConfigError, match="hierarchy must be > 0"):
        Calibration({}, hierarchy=float("nan"))
    with pytest.raises(ConfigError, match="malformed calibration"):
        Calibration.from_dict({"temperatures": [1.0]})
