"""The partitioning benchmark on a small n: its numbers and its command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import partitioning
from benchmarks.commands import main


def test_coordinates_are_valid_and_clustered() -> None:
    lat, lon = partitioning.coordinates(10_000, seed=1)
    assert lat.shape == lon.shape == (10_000,)
    assert (np.abs(lat) <= 90).all() and (np.abs(lon) <= 180).all()
    # Half the points crowd around a few hundred places: many share a 0.1 degree square.
    squares = np.unique(np.round(lat[5000:], 1) * 10_000 + np.round(lon[5000:], 1))
    assert squares.size < 2500


def test_run_reports_times_classes_and_the_s2sphere_extrapolation() -> None:
    result = partitioning.run(n=3000, seed=0)
    assert result["n"] == 3000
    assert result["partition_s"] > 0
    assert result["s2sphere_sample"] == 3000
    assert result["s2sphere_extrapolated_s"] == pytest.approx(result["s2sphere_sample_s"])
    assert result["sample_ids_match_s2sphere"] is True
    assert set(result["classes"]) == {"cells_50_5000", "cells_50_2000", "cells_50_1000"}
    assert "EXTRAPOLATED" in partitioning.report(result)


def test_bench_partitioning_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["partitioning", "--n", "2000", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 2000
    assert result["speedup"] > 0
    with pytest.raises(SystemExit):
        main(["partitioning", "--n", "0"])
