"""Session-scoped real servers: one local stack (Kafka, Redis, TorchServe) per test session.

Tests that use these fixtures carry the `integration` marker. The stack runs on free ports in a
temporary run folder, with TorchServe's model API on so tests can register archives; it is
stopped at the end of the session, also after Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from geoverdict_common import archives
from geoverdict_stack.stack import Stack, StackConfig, sigterm_as_exit


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real local stack, started once for the whole session."""
    run_dir = tmp_path_factory.mktemp("stack")
    config = StackConfig.with_free_ports(
        run_dir=run_dir, model_store=run_dir / "model_store", enable_model_api=True
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
        str(archiver), "--model-name", name, "--version", "1.0", "--handler", str(handler),
        "--export-path", str(store), "--runtime", "python", "--force",
    ]  # fmt: skip
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


FIXTURE_HANDLER = Path(__file__).parent / "service" / "assets" / "fixture_handler.py"


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
