"""TorchServe 0.12 with token authorization on, every address on loopback."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from geoverdict_common.exceptions import InferenceKeyError
from geoverdict_common.inference_key import KEY_FILE_NAME, read_inference_key
from geoverdict_common.inference_key import read_keys as read_key_file
from geoverdict_modelserver import torchserve_config, torchserve_entrypoint
from geoverdict_stack import prerequisites
from geoverdict_stack.exceptions import NotRunningError
from geoverdict_stack.ports import HOST, free_ports
from geoverdict_stack.server import Server


def read_keys(key_file: Path) -> dict[str, str]:
    """The keys TorchServe wrote: {"inference": ..., "management": ..., "API": ...}."""
    try:
        return read_key_file(key_file)
    except InferenceKeyError as exc:
        raise NotRunningError(f"TorchServe's keys: {exc}") from exc


class TorchServeServer(Server):
    """TorchServe in the foreground; ready when /ping answers Healthy."""

    name = "torchserve"

    def __init__(
        self,
        run_dir: Path,
        inference_port: int,
        management_port: int,
        metrics_port: int,
        model_store: Path,
        models: Sequence[str] = (),
        enable_model_api: bool = False,
        start_timeout: float = 120.0,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(run_dir, start_timeout)
        self.inference_port = inference_port
        self.management_port = management_port
        self.metrics_port = metrics_port
        self.model_store = model_store
        self.models = list(models)
        self.enable_model_api = enable_model_api
        self.overrides = dict(overrides or {})
        self.config_file = self.home / "config.properties"
        # TorchServe also opens two gRPC ports (7070/7071 by default); take free ones so two
        # servers (a user's and a test's) never collide.
        self.grpc_ports = free_ports(2)

    @property
    def key_file(self) -> Path:
        """TorchServe writes its keys into its working directory (all of them: inference,
        management, token rotation); for the stack's own use, never for a consumer."""
        return self.home / KEY_FILE_NAME

    @property
    def inference_key_file(self) -> Path:
        """The inference key alone, in key_file.json's format: what a consumer is given."""
        return self.home / "inference-key" / KEY_FILE_NAME

    def url(self, role: str) -> str:
        """http://host:port of the inference, management or metrics API."""
        port = {
            "inference": self.inference_port,
            "management": self.management_port,
            "metrics": self.metrics_port,
        }[role]
        return f"http://{HOST}:{port}"

    def ports(self) -> dict[str, int]:
        return {
            "torchserve inference": self.inference_port,
            "torchserve management": self.management_port,
            "torchserve metrics": self.metrics_port,
        }

    def properties(self) -> dict[str, str]:
        """The shipped torchserve.properties, moved to loopback and this run's folders."""
        props = torchserve_config.properties()
        props.update(
            {
                "inference_address": self.url("inference"),
                "management_address": self.url("management"),
                "metrics_address": self.url("metrics"),
                "grpc_inference_address": HOST,
                "grpc_management_address": HOST,
                "grpc_inference_port": str(self.grpc_ports[0]),
                "grpc_management_port": str(self.grpc_ports[1]),
                "model_store": str(self.model_store),
                "allowed_urls": f"file://{self.model_store.resolve()}/.*",
                "load_models": ",".join(self.models) if self.models else "",
                "enable_model_api": str(self.enable_model_api).lower(),
                "disable_token_authorization": "false",
            }
        )
        props.update(self.overrides)
        if not props["load_models"]:
            del props["load_models"]
        return props

    def prepare(self) -> None:
        prerequisites.java()
        self.model_store.mkdir(parents=True, exist_ok=True)
        (self.home / "tmp").mkdir(exist_ok=True)
        self.key_file.unlink(missing_ok=True)
        log_config = self.home / torchserve_config.LOG_CONFIG
        log_config.write_text(torchserve_config.text(torchserve_config.LOG_CONFIG))
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))

    def command(self) -> Sequence[str]:
        # Through the same entrypoint as the image: archives checked against the model store's
        # manifest first, the inference key alone published for the consumer.
        entrypoint = [
            sys.executable,
            "-m",
            torchserve_entrypoint.__name__,
            "--model-store",
            str(self.model_store),
            "--load",
            ",".join(self.models),
            "--inference-key",
            str(self.inference_key_file),
            "--",
        ]
        argv = [
            *entrypoint,
            prerequisites.torchserve().path,
            "--start",
            "--foreground",
            "--no-config-snapshots",
            "--ts-config",
            str(self.config_file),
            "--model-store",
            str(self.model_store),
            # warnings only (replaces the vmargs' path)
            "--log-config",
            str(self.home / torchserve_config.LOG_CONFIG),
        ]
        if self.enable_model_api:
            argv.append("--enable-model-api")
        return argv

    def environment(self) -> Mapping[str, str]:
        tmp = str(self.home / "tmp")
        # TMPDIR gives the launcher its own PID file, so two stacks never see each other.
        return {
            "TMPDIR": tmp,
            "TEMP": tmp,
            "LOG_LOCATION": str(self.home / "logs"),
            "METRICS_LOCATION": str(self.home / "logs"),
        }

    def ready(self) -> bool:
        if not self.key_file.exists() or not self.inference_key_file.exists():
            return False
        try:
            key = read_inference_key(self.key_file)
        except InferenceKeyError:
            return False  # written but not complete yet
        # With token authorization on, even /ping needs the inference key.
        request = urllib.request.Request(
            self.url("inference") + "/ping", headers={"Authorization": f"Bearer {key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                body = json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return bool(body.get("status") == "Healthy")
