"""What the proofs run against: at `make test`'s small size the session's stack with the
torch-free fixture model; with `--full-size` a stack of their own serving the model archive,
whose results are written to bench/exactly-once.json and docs/benchmarks.md at the end."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from PIL import Image

from benchmarks.exceptions import BenchError
from tests.stack_fixtures import Served, torchserve_served
from tests.system.exactly_once import ExactlyOnceResults, Target
from tests.system.exceptions import HarnessError
from tests.system.proofs import FULL, SMALL, Sizes, proving_ground, report_paths, write_proofs

Run = TypeVar("Run")


def photos(count: int = 8) -> list[bytes]:
    """Small distinct JPEGs: the fixture model answers any photo alike."""
    found = []
    for k in range(count):
        out = io.BytesIO()
        Image.new("RGB", (48, 48), (k * 30 % 256, 90, 160)).save(out, "JPEG", quality=85)
        found.append(out.getvalue())
    return found


@pytest.fixture(scope="session")
def sizes(pytestconfig: pytest.Config) -> Sizes:
    """The small sizes, or the issue's with --full-size."""
    return FULL if pytestconfig.getoption("full_size") else SMALL


@pytest.fixture(scope="session")
def target(
    request: pytest.FixtureRequest, sizes: Sizes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """Where the consumers run and what they answer."""
    if sizes.full:
        with proving_ground(None, None, request.config.getoption("model_server")) as target:
            yield target
        return
    # The proofs are about Kafka, the model's speed only sets how long they take.
    stack = request.getfixturevalue("stack")
    served: Served = torchserve_served(stack, request.getfixturevalue("fixture_model"))
    # A transaction step waits at most the shutdown timeout: 10 s rather than 30 keeps the
    # broker-restart proofs short.
    yield Target(
        stack.kafka_bootstrap,
        served.environment(),
        photos(),
        tmp_path_factory.mktemp("proofs"),
        max_poll_records=8,
        settings={"shutdown_timeout_s": "10"},
    )


@pytest.fixture(scope="session")
def proof_results(pytestconfig: pytest.Config, sizes: Sizes) -> Iterator[ExactlyOnceResults]:
    """The proofs' runs as they end; at full size written to bench/exactly-once.json and
    docs/benchmarks.md once the session is over (also those of proofs that failed)."""
    results = ExactlyOnceResults(model=pytestconfig.getoption("model_server"))
    yield results
    if sizes.full:
        write_proofs(results, *report_paths())


@pytest.fixture
def prove(proof_results: ExactlyOnceResults) -> Callable[[str, Callable[[], Run]], Run]:
    """Runs one proof; one that cannot run is recorded as such in the report, and fails."""

    def run(name: str, proof: Callable[[], Run]) -> Run:
        try:
            return proof()
        except (HarnessError, BenchError) as exc:
            proof_results.failed[name] = str(exc)
            raise

    return run
