"""Session-scoped real servers: one local stack (Kafka, Redis, TorchServe and Triton) per test
session.

Tests that use these fixtures carry the `integration` marker. The stack runs on free ports in a
temporary run folder, with TorchServe's model API on so tests can register archives, and Triton
loading models added to its repository; it is stopped at the end of the session, also after
Ctrl-C or SIGTERM. `fixture_server` and `demo_server` are parametrized over both model servers:
a test of the service's behaviour that takes one runs against each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from geoverdict_common import archives
from geoverdict_modelserver.triton_repository import TritonServing, add_model
from geoverdict_stack.stack import SERVICES, Stack, StackConfig, sigterm_as_exit
from geoverdict_stack.triton import AUTH_HEADER, TritonServer


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real local stack, started once for the whole session."""
    run_dir = tmp_path_factory.mktemp("stack")
    config = StackConfig.with_free_ports(
        run_dir=run_dir,
        model_store=run_dir / "model_store",
        enable_model_api=True,
        services=SERVICES,
    )
    with sigterm_as_exit(), Stack(config) as running:
        yield running


def build_archive(
    handler: Path, name: str, store: Path, extra_files: list[Path] | None = None
) -> Path:
    """A .mar built with the real torch-model-archiver into `store`."""
    store.mkdir(parents=True, exist_ok=True)
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    cmd = [
        str(archiver),
        "--model-name",
        name,
        "--version",
        "1.0",
        "--handler",
        str(handler),
        "--export-path",
        str(store),
        "--runtime",
        "python",
        "--force",
    ]
    if extra_files:
        cmd += ["--extra-files", ",".join(str(f) for f in extra_files)]
    subprocess.run(cmd, check=True, capture_output=True)
    archive = store / f"{name}.mar"
    archives.record(archive)  # as `geoverdict export` does: TorchServe loads only what is listed
    return archive


def register_model(
    stack: Stack, archive: Path, batch_size: int = 1, max_batch_delay_ms: int = 50, workers: int = 1
) -> str:
    """Register an archive of the model store through the management API; returns its name."""
    name = archive.stem
    query = (
        f"url={archive.name}&model_name={name}&batch_size={batch_size}"
        f"&max_batch_delay={max_batch_delay_ms}&initial_workers={workers}&synchronous=true"
    )
    request = urllib.request.Request(
        f"{stack.torchserve.url('management')}/models?{query}",
        method="POST",
        headers={"Authorization": f"Bearer {stack.torchserve_keys()['management']}"},
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        json.loads(resp.read())
    return name


ASSETS = Path(__file__).parent / "service" / "assets"
FIXTURE_HANDLER = ASSETS / "fixture_handler.py"
FIXTURE_TRITON_MODEL = ASSETS / "fixture_triton_model.py"


@pytest.fixture(scope="session")
def fixture_model(stack: Stack) -> str:
    """The torch-free fixture handler (contract-shaped predictions), with server-side batching."""
    archive = build_archive(FIXTURE_HANDLER, "fixture", stack.config.model_store)
    return register_model(stack, archive, batch_size=8, max_batch_delay_ms=20, workers=1)


def serve_demo_archive(stack: Stack, name: str, batch_size: int, max_batch_delay_ms: int) -> str:
    """Register the committed demo archive of model_store/ under `name`; returns the name."""
    from geoverdict.demo.archive import find_archive

    link = stack.config.model_store / f"{name}.mar"
    if not link.exists():
        link.symlink_to(find_archive(None))
    # Two workers, as the archive's model-config asks (each then runs one torch thread).
    return register_model(stack, link, batch_size, max_batch_delay_ms, workers=2)


@pytest.fixture(scope="session")
def demo_model(stack: Stack) -> str:
    """The demo model served as TorchServe would in production (batch 8, 20 ms)."""
    return serve_demo_archive(stack, "demo", batch_size=8, max_batch_delay_ms=20)


# -- both model servers ----------------------------------------------------------------------
@dataclass(frozen=True)
class Served:
    """A model served by one of the model servers, and how a consumer reaches it."""

    server: str  # torchserve | triton
    model: str
    url: str
    key_file: Path

    def settings(self, **group: Any) -> dict[str, Any]:
        """load_service_settings' keyword arguments choosing this server and model; `group`
        adds to (or replaces) the server's settings."""
        values = {"url": self.url, "key_file": self.key_file, "model_name": self.model, **group}
        return {"model_server": self.server, self.server: values}

    def environment(self) -> dict[str, str]:
        """The same, as a consumer process' environment."""
        prefix = f"GEOVERDICT_{self.server.upper()}_"
        env = {
            f"{prefix}URL": self.url,
            f"{prefix}KEY_FILE": str(self.key_file),
            f"{prefix}MODEL_NAME": self.model,
        }
        if self.server == "triton":
            env["GEOVERDICT_MODEL_SERVER"] = "triton"
        return env


def torchserve_served(stack: Stack, model: str) -> Served:
    """A model registered with the stack's TorchServe."""
    return Served("torchserve", model, stack.torchserve.url("inference"), stack.torchserve_key_file)


def triton_load(triton: TritonServer, model: str) -> Served:
    """Load (or reload) a model of the Triton's repository; returns how to reach it."""
    request = urllib.request.Request(
        f"{triton.url()}/v2/repository/models/{model}/load",
        data=b"{}",
        method="POST",
        headers={AUTH_HEADER: f"Bearer {triton.secret()}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=180) as resp:
        resp.read()
    return Served("triton", model, triton.url(), triton.inference_key_file)


def add_fixture_model(repository: Path, name: str = "fixture") -> None:
    """The torch-free fixture model in a Triton repository, batching as the real one."""
    folder = repository / name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE_TRITON_MODEL, folder / "model.py")
    shutil.copyfile(FIXTURE_HANDLER, folder / "fixture_handler.py")
    serving = TritonServing(count=1, options={})
    (repository / name / "config.pbtxt").write_text(serving.config_pbtxt(name))


@pytest.fixture(scope="session", params=["torchserve", "triton"])
def fixture_server(request: pytest.FixtureRequest, stack: Stack) -> Served:
    """The fixture model (contract-shaped answers, no torch) on each model server."""
    if request.param == "torchserve":
        return torchserve_served(stack, request.getfixturevalue("fixture_model"))
    add_fixture_model(stack.triton.repository)
    return triton_load(stack.triton, "fixture")


@pytest.fixture(scope="session", params=["torchserve", "triton"])
def demo_server(request: pytest.FixtureRequest, stack: Stack) -> Served:
    """The committed demo archive on each model server, batching as in production."""
    if request.param == "torchserve":
        return torchserve_served(stack, request.getfixturevalue("demo_model"))
    return triton_demo(stack)


def triton_demo(stack: Stack) -> Served:
    """The committed demo archive served by the stack's Triton (loaded once)."""
    from geoverdict.demo.archive import find_archive

    if not (stack.triton.repository / "demo").is_dir():
        add_model(stack.triton.repository, "demo", find_archive(None))
        return triton_load(stack.triton, "demo")
    return Served("triton", "demo", stack.triton.url(), stack.triton.inference_key_file)
