"""Triton (the `tritonserver` of the pinned nvidia-pytriton wheel) as a plain process, serving
the stack's archives through the Python backend, everything on loopback.

It starts through the same entrypoint as the Triton image (geoverdict_modelserver's
triton_entrypoint): the model
repository written from the model store (each archive checked against its SHA256SUMS), a secret
made for this run and written, in TorchServe's key_file.json format, to
`<run>/triton/inference-key/key_file.json` for the consumer (GEOVERDICT_TRITON_KEY_FILE);
inference and every management API refused without `authorization: Bearer <secret>`, health
open (probes); models loaded only when named (explicit model control); Prometheus metrics on
their own port; gRPC off (the consumer speaks REST with binary tensors).

Triton's Python stub ignores PYTHONPATH and brings no numpy of its own: the repository's
entry point adds PYTHONPATH as site folders, here the pinned numpy 1.26 of the Triton
installation (the stub is built against numpy 1) ahead of this environment's packages.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from geoverdict_common.inference_key import KEY_FILE_NAME, read_inference_key
from geoverdict_common.triton_names import INPUT, OUTPUT
from geoverdict_modelserver import triton_entrypoint
from geoverdict_modelserver.model_load import model_archives
from geoverdict_modelserver.triton_entrypoint import AUTH_HEADER
from geoverdict_modelserver.triton_repository import TritonServing
from geoverdict_stack import prerequisites
from geoverdict_stack.ports import HOST
from geoverdict_stack.server import Server


class TritonServer(Server):
    """tritonserver in the foreground; ready when every model answers a real request."""

    name = "triton"

    def __init__(
        self,
        run_dir: Path,
        http_port: int,
        metrics_port: int,
        model_store: Path,
        models: Sequence[str] = (),
        start_timeout: float = 120.0,
        loaded: Sequence[str] = (),
    ) -> None:
        super().__init__(run_dir, start_timeout)
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.model_store = model_store
        self.models = list(models)  # archives of the model store, [NAME=]FILE.mar
        self.loaded = list(loaded)  # models the caller put in the repository, loaded too
        self.repository = self.home / "models"
        self.backends = self.home / "backends"

    @property
    def inference_key_file(self) -> Path:
        """The secret, in key_file.json's format: what a consumer is given."""
        return self.home / "inference-key" / KEY_FILE_NAME

    def secret(self) -> str:
        """This run's secret."""
        return read_inference_key(self.inference_key_file)

    def url(self, role: str = "inference") -> str:
        """http://host:port of the inference (HTTP) API or of the metrics."""
        port = {"inference": self.http_port, "metrics": self.metrics_port}[role]
        return f"http://{HOST}:{port}"

    def model_names(self) -> list[str]:
        """The names the models are served under."""
        return [*model_archives(self.models), *self.loaded]

    def ports(self) -> dict[str, int]:
        return {"triton http": self.http_port, "triton metrics": self.metrics_port}

    def prepare(self) -> None:
        installed = prerequisites.triton()
        python = self.backends / "python"
        shutil.rmtree(self.backends, ignore_errors=True)
        shutil.copytree(
            installed.backends / "python", python, ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copy(installed.stub(), python / "triton_python_backend_stub")
        self.inference_key_file.unlink(missing_ok=True)  # a new secret for each start

    def command(self) -> Sequence[str]:
        installed = prerequisites.triton(fetch=False)
        entrypoint = [
            sys.executable,
            "-m",
            triton_entrypoint.__name__,
            "--model-store",
            str(self.model_store),
            "--repository",
            str(self.repository),
            "--load",
            ",".join(self.models),
            "--also-load",
            ",".join(self.loaded),
            "--inference-key",
            str(self.inference_key_file),
            "--",
        ]
        return [
            *entrypoint,
            str(installed.server),
            "--backend-directory",
            str(self.backends),
            "--http-address",
            HOST,
            "--http-port",
            str(self.http_port),
            "--allow-grpc",
            "false",
            "--allow-metrics",
            "true",
            "--metrics-address",
            HOST,
            "--metrics-port",
            str(self.metrics_port),
            "--exit-on-error",
            "true",
            "--strict-readiness",
            "true",
            # An idle keep-alive client holds the shutdown for all of it (30 s by default).
            "--exit-timeout-secs",
            "5",
            "--log-info",
            "true",
            "--log-verbose",
            "0",
        ]

    def environment(self) -> Mapping[str, str]:
        installed = prerequisites.triton(fetch=False)
        site = sysconfig.get_paths()["purelib"]  # this environment's packages (torch, ...)
        # The caller's own PYTHONPATH too (a source checkout's packages), as TorchServe's
        # inherits it, after the pinned numpy of the Triton installation.
        caller = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        return {
            "LD_LIBRARY_PATH": os.pathsep.join(str(p) for p in installed.libraries),
            "PYTHONPATH": os.pathsep.join([str(installed.home), *caller, site]),
            "OMP_NUM_THREADS": str(TritonServing().threads),
        }

    def ready(self) -> bool:
        if not self.inference_key_file.exists() or not self._get("/v2/health/ready"):
            return False
        return all(self._answers(name) for name in self.model_names())

    def _get(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url() + path, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _answers(self, model: str) -> bool:
        """A real request: an empty image, whose `empty` error reply names the model version."""
        data = b"\0\0\0\0"  # one BYTES element of length 0
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": INPUT,
                        "shape": [1, 1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(data)},
                    }
                ],
                "outputs": [{"name": OUTPUT}],
            }
        ).encode()
        request = urllib.request.Request(
            f"{self.url()}/v2/models/{model}/infer",
            data=header + data,
            method="POST",
            headers={
                "Inference-Header-Content-Length": str(len(header)),
                AUTH_HEADER: f"Bearer {self.secret()}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                (output,) = json.loads(resp.read())["outputs"]
                reply = json.loads(output["data"][0])
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError):
            return False
        return bool(reply.get("model_version"))
