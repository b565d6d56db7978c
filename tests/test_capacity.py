"""`geoverdict capacity`: the plan follows from the measured figures, and says what it needs.

The figures are the test's own (those docs/operations.md quotes): never bench/costs.json, which
a user's `make bench` rewrites with that machine's numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from geoverdict.capacity import CapacityError, Measured, MeasuredCosts, ServerCosts, plan
from geoverdict.cli import main
from tests.repo import REPO_ROOT

# The committed run's costs on this project's 2-core CPU machine, as docs/operations.md quotes
# them ("Capacity"): 61.5 TorchServe images/s (Triton 53.0), 1.81 / 0.73 consumer CPU-ms.
DOCUMENTED = MeasuredCosts(
    cores=2,
    gpu=None,
    servers={
        "torchserve": ServerCosts(61.51, 1.807, 0.727, 49.58),
        "triton": ServerCosts(53.01, 1.791, 0.823, 44.38),
    },
)


@pytest.fixture
def costs(tmp_path: Path) -> Path:
    """The documented costs as `make bench` writes them."""
    return DOCUMENTED.write(tmp_path / "costs.json")


def measured(images_per_s: float = 50.0, cold_ms: float = 2.0, cached_ms: float = 0.5) -> Measured:
    return Measured("test", 2, None, images_per_s, cold_ms, cached_ms, 40.0)


def test_the_documented_costs_give_the_documented_plan(costs: Path) -> None:
    # docs/operations.md, "Capacity", quotes this plan.
    result = plan(Measured.read(costs), 1000)
    assert result.measured.server_images_per_s == pytest.approx(61.51)
    assert (result.consumers, result.server_replicas, result.partitions) == (3, 24, 6)
    assert result.lag_threshold == 3334
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert "3 consumers (1.8 cores), 24 TorchServe replicas" in " ".join(operations.split())
    assert "`lagThreshold` 3334" in operations


def test_the_documented_costs_plan_triton_with_its_own_figures(costs: Path) -> None:
    # The same run measured Triton slower per replica on this 2-core CPU: more replicas.
    result = plan(Measured.read(costs, server="triton"), 1000)
    assert result.measured.server_images_per_s == pytest.approx(53.01)
    assert (result.consumers, result.server_replicas, result.partitions) == (3, 27, 6)


def test_the_costs_file_reads_back_what_was_written(costs: Path) -> None:
    assert MeasuredCosts.read(costs) == DOCUMENTED
    only_torchserve = MeasuredCosts(2, "H200", {"torchserve": DOCUMENTED.servers["torchserve"]})
    path = only_torchserve.write(costs.parent / "gpu.json")
    assert Measured.read(path).gpu == "H200"
    with pytest.raises(CapacityError, match="no triton figures"):
        Measured.read(path, server="triton")


def test_replicas_cover_the_rate_at_the_planned_utilization() -> None:
    result = plan(measured(), 1000, utilization=0.5)
    # 2 CPU-ms per event: 500 events/s per consumer, 250 at half load -> 4 consumers
    assert result.consumer_events_per_s == pytest.approx(250)
    assert result.consumers == 4 and result.consumer_cores == pytest.approx(2.0)
    # 50 cold images/s per TorchServe, 25 at half load -> 40 replicas
    assert result.server_replicas == 40
    assert result.partitions == 8 and result.lag_threshold == 2500


def test_cache_hits_spare_torchserve_and_consumer_cpu() -> None:
    cold, warm = plan(measured(), 1000), plan(measured(), 1000, cache_hit_ratio=0.8)
    assert warm.server_replicas == math.ceil(200 / 35) < cold.server_replicas
    assert warm.consumer_cores == pytest.approx(1000 * (0.2 * 2.0 + 0.8 * 0.5) / 1000)
    assert warm.consumers <= cold.consumers


def test_a_small_stream_still_gets_room_to_grow() -> None:
    result = plan(measured(), 1)
    assert (result.consumers, result.server_replicas, result.partitions) == (1, 1, 6)
    assert result.lag_threshold == 10  # ten seconds of events


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"events_per_s": 0}, "events per second"),
        ({"events_per_s": 10, "cache_hit_ratio": 1.5}, "cache hit ratio"),
        ({"events_per_s": 10, "utilization": 0}, "utilization"),
        ({"events_per_s": 10, "lag_seconds": -1}, "lag seconds"),
    ],
)
def test_out_of_range_inputs_are_refused(kwargs: dict[str, float], says: str) -> None:
    with pytest.raises(CapacityError, match=says):
        plan(measured(), **kwargs)


def test_cli_prints_the_plan_and_json(costs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", "--events-per-s", "1000", "--costs", str(costs)]) == 0
    table = capsys.readouterr().out
    assert "| consumer replicas | 3 |" in table and "| TorchServe replicas | 24 |" in table
    assert "| KEDA lagThreshold | 3334 |" in table
    args = ["capacity", "--events-per-s", "1000", "--costs", str(costs), "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["partitions"] == 6


def test_cli_names_a_missing_or_foreign_costs_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["capacity", "--events-per-s", "5", "--costs", str(tmp_path / "x.json")]) == 2
    assert "run `make bench`" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text('{"machine": {}}')
    assert main(["capacity", "--events-per-s", "5", "--costs", str(other)]) == 2
    assert "is not a costs file written by `make bench`" in capsys.readouterr().err


def test_the_default_costs_file_is_the_working_directory_s(
    costs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (costs.parent / "bench").mkdir()
    costs.rename(costs.parent / "bench" / "costs.json")
    monkeypatch.chdir(costs.parent)
    assert main(["capacity", "--events-per-s", "1000"]) == 0
    assert "| TorchServe replicas | 24 |" in capsys.readouterr().out
