"""Model-server clients behind one small interface (what the consumer's loop uses: submit_many,
healthy, model_version, close): TorchServe, and any server of the Open Inference Protocol
(Triton). `GEOVERDICT_MODEL_SERVER` chooses; the loop never knows which answers."""

from __future__ import annotations

from collections.abc import Callable

from geoverdict_service.model_servers.http import HttpModelServer
from geoverdict_service.model_servers.open_inference import OpenInferenceClient
from geoverdict_service.model_servers.tokens import TokenSource
from geoverdict_service.model_servers.torchserve import TorchServeClient
from geoverdict_service.settings import ServiceSettings, TritonSettings


def client_for(
    settings: ServiceSettings, observe: Callable[[float], None] | None = None
) -> HttpModelServer:
    """The client of the chosen model server, from its settings group."""
    server = settings.server
    token = server.token.get_secret_value() if server.token else None
    tokens = TokenSource(token, server.key_file)  # no network: settle config errors first
    options = {
        "concurrency": server.concurrency,
        "timeout_s": server.timeout_s,
        "retries": server.retries,
        "observe": observe,
    }
    if isinstance(server, TritonSettings):
        return OpenInferenceClient(
            server.url,
            server.model_name,
            tokens,
            batch_size=server.batch_size,
            max_request_bytes=server.max_request_bytes,
            auth_header=server.auth_header,
            **options,
        )
    return TorchServeClient(server.url, server.model_name, tokens, **options)
