"""docker-compose.yml under podman-compose: the order and conditions the runner starts services
by, read from the real compose files (the run itself: `geoverdict images compose up | check`,
docs/operations.md "Compose under podman")."""

from __future__ import annotations

import pytest
import yaml

from geoverdict_images.compose import FILES, Service, _seconds, services, start_order
from geoverdict_images.exceptions import ImagesError
from geoverdict_images.images import COMPOSE_STAND_INS
from tests.repo import REPO_ROOT


@pytest.fixture(scope="module")
def found() -> dict[str, Service]:
    return services(REPO_ROOT / f for f in FILES)


def test_each_service_starts_after_what_it_depends_on(found: dict[str, Service]) -> None:
    order = [s.name for s in start_order(found)]
    assert order.index("kafka") < order.index("kafka-init") < order.index("consumer")
    assert order.index("redis") < order.index("redis-exporter")
    assert order.index("torchserve") < order.index("consumer")
    assert found["consumer"].depends_on == {
        "kafka-init": "service_completed_successfully",
        "redis": "service_healthy",
        "torchserve": "service_healthy",
    }


def test_grafana_has_no_stand_in_and_is_not_started(found: dict[str, Service]) -> None:
    assert "grafana" not in [s.name for s in start_order(found)]
    assert found["grafana"].profiles  # said in the override, not faked


def test_the_override_changes_only_images_of_third_party_servers() -> None:
    override = yaml.safe_load((REPO_ROOT / FILES[1]).read_text())["services"]
    base = yaml.safe_load((REPO_ROOT / FILES[0]).read_text())["services"]
    named = {spec["image"] for spec in override.values() if "image" in spec}
    assert named == {s.alias for s in COMPOSE_STAND_INS}
    for name, spec in override.items():
        assert set(spec) <= {"image", "profiles"}, name
        assert "build" not in base[name]  # never one of geoverdict's own images


def test_the_health_deadline_is_compose_s(found: dict[str, Service]) -> None:
    # kafka: start_period 20s + interval 10s x 12 retries (+30 s of slack for a slow machine)
    assert found["kafka"].health_deadline_s() == 20 + 10 * 12 + 30


def test_a_cycle_in_depends_on_is_named() -> None:
    a = Service("a", {"b": "service_started"}, {}, ())
    b = Service("b", {"a": "service_started"}, {}, ())
    with pytest.raises(ImagesError, match="cycle: a -> b"):
        start_order({"a": a, "b": b})


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10.0), ("1m", 60.0), ("500ms", 0.5)])
def test_durations(text: str, seconds: float) -> None:
    assert _seconds(text) == seconds


def test_an_unreadable_duration_is_an_error() -> None:
    with pytest.raises(ImagesError, match="duration 'soon'"):
        _seconds("soon")
