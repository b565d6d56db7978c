"""Triton (the `tritonserver` of the pinned nvidia-pytriton wheel) as a plain process, serving
the stack's archives through the Python backend, everything on loopback.

Inference and every management API (model repository, configuration, statistics, trace,
logging, shared memory) are refused without the header `authorization: Bearer <secret>`; the
secret is made for this run and written, in TorchServe's key_file.json format, to
`<run>/triton/inference-key/key_file.json` for the consumer (GEOVERDICT_TRITON_KEY_FILE). The
health routes stay open (probes). Models load only when named (explicit model control), from a
repository written at start (geoverdict_common.triton_repository: each archive checked
against the model store's SHA256SUMS); Prometheus metrics on their own port; gRPC off (the
consumer speaks REST with binary tensors).

Triton's Python stub ignores PYTHONPATH and brings no numpy of its own: the repository's
entry point adds PYTHONPATH as site folders, here the pinned numpy 1.26 of the Triton
installation (the stub is built against numpy 1) ahead of this environment's packages.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from geoverdict_common.exceptions import ServingConfigError
from geoverdict_common.triton_repository import TritonServing, write_repository
from geoverdict_stack import prerequisites
from geoverdict_stack.exceptions import StartError
from geoverdict_stack.ports import HOST
from geoverdict_stack.server import Server

KEY_FILE_NAME = "key_file.json"
AUTH_HEADER = "authorization"
# Every API group of Triton 2.51 but health and metadata.
RESTRICTED = ("inference", "model-repository", "model-config", "shared-memory", "statistics",
              "trace", "logging")  # fmt: skip


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
        serving: TritonServing | None = None,
        loaded: Sequence[str] = (),
    ) -> None:
        super().__init__(run_dir, start_timeout)
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.model_store = model_store
        self.models = list(models)  # archives of the model store, [NAME=]FILE.mar
        self.loaded = list(loaded)  # models the caller put in the repository, loaded too
        self.serving = serving or TritonServing()
        self.repository = self.home / "models"
        self.backends = self.home / "backends"

    @property
    def inference_key_file(self) -> Path:
        """The secret, in key_file.json's format: what a consumer is given."""
        return self.home / "inference-key" / KEY_FILE_NAME

    def secret(self) -> str:
        """This run's secret."""
        return str(json.loads(self.inference_key_file.read_text())["inference"]["key"])

    def url(self, role: str = "inference") -> str:
        """http://host:port of the inference (HTTP) API or of the metrics."""
        port = {"inference": self.http_port, "metrics": self.metrics_port}[role]
        return f"http://{HOST}:{port}"

    def model_names(self) -> list[str]:
        """The names the models are served under."""
        archives = [entry.partition("=")[0] if "=" in entry else Path(entry).stem
                    for entry in self.models]  # fmt: skip
        return [*archives, *self.loaded]

    def ports(self) -> dict[str, int]:
        return {"triton http": self.http_port, "triton metrics": self.metrics_port}

    def prepare(self) -> None:
        installed = prerequisites.triton()
        python = self.backends / "python"
        shutil.rmtree(self.backends, ignore_errors=True)
        shutil.copytree(installed.backends / "python", python,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        shutil.copy(installed.stub(), python / "triton_python_backend_stub")
        self.repository.mkdir(parents=True, exist_ok=True)  # the stack's `up` starts it empty
        try:
            write_repository(self.repository, self.model_store, self.models, self.serving)
        except ServingConfigError as exc:
            raise StartError(self.name, str(exc)) from exc
        key = self.inference_key_file
        key.parent.mkdir(parents=True, exist_ok=True)
        tmp = key.with_name(f".{key.name}.tmp")
        tmp.write_text(json.dumps({"inference": {"key": secrets.token_urlsafe(32)}}))
        tmp.chmod(0o600)
        os.replace(tmp, key)

    def command(self) -> Sequence[str]:
        installed = prerequisites.triton(fetch=False)
        restricted = f"{','.join(RESTRICTED)}:{AUTH_HEADER}=Bearer {self.secret()}"
        return [
            str(installed.server),
            "--model-repository", str(self.repository),
            "--backend-directory", str(self.backends),
            "--model-control-mode", "explicit",
            *[f"--load-model={name}" for name in self.model_names()],
            "--http-address", HOST, "--http-port", str(self.http_port),
            f"--http-restricted-api={restricted}",
            "--allow-grpc", "false",
            "--allow-metrics", "true", "--metrics-address", HOST,
            "--metrics-port", str(self.metrics_port),
            "--exit-on-error", "true", "--strict-readiness", "true",
            "--log-info", "true", "--log-verbose", "0",
        ]  # fmt: skip

    def environment(self) -> Mapping[str, str]:
        installed = prerequisites.triton(fetch=False)
        site = sysconfig.get_paths()["purelib"]  # this environment's packages (torch, ...)
        return {
            "LD_LIBRARY_PATH": os.pathsep.join(str(p) for p in installed.libraries),
            "PYTHONPATH": os.pathsep.join([str(installed.home), site]),
            "OMP_NUM_THREADS": str(self.serving.threads),
        }

    def ready(self) -> bool:
        if not self._get("/v2/health/ready"):
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
        header = json.dumps({
            "inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(data)}}],
            "outputs": [{"name": "REPLY"}],
        }).encode()  # fmt: skip
        request = urllib.request.Request(
            f"{self.url()}/v2/models/{model}/infer", data=header + data, method="POST",
            headers={"Inference-Header-Content-Length": str(len(header)),
                     AUTH_HEADER: f"Bearer {self.secret()}"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                (output,) = json.loads(resp.read())["outputs"]
                reply = json.loads(output["data"][0])
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError):
            return False
        return bool(reply.get("model_version"))
