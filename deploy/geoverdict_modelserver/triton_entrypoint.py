"""Triton's entry point, in the image and on the local stack: the model repository written from
the model store, the inference secret settled, then `tritonserver` in its place.

1. The repository: one model per archive to load (geoverdict_modelserver.triton_repository), each
   checked against the model store's SHA256SUMS when it is written and again by the model at
   load; an archive the store does not list refuses the start (exit 3), as TorchServe's
   entrypoint does.
2. The secret: read from `--inference-key` (TorchServe's key_file.json format; a Kubernetes
   Secret or the stack's file), or made and written there, readable by the consumer, when the
   file does not exist. Inference and every management API are then refused without
   `authorization: Bearer <secret>`; health stays open for probes.
3. exec tritonserver with explicit model control and the models to load, after the arguments
   given after `--`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from geoverdict_common.exceptions import InferenceKeyError, ServingConfigError
from geoverdict_common.inference_key import read_inference_key, write_inference_key
from geoverdict_modelserver.triton_repository import GPU_TRITON, TritonServing, write_repository

AUTH_HEADER = "authorization"
# Every API group of Triton 2.51 but health and metadata.
RESTRICTED = (
    "inference",
    "model-repository",
    "model-config",
    "shared-memory",
    "statistics",
    "trace",
    "logging",
)


def settle_secret(path: Path) -> str:
    """The secret in `path`, or a new one written there (atomically, readable by the
    consumer's user: it mounts the file read-only)."""
    if path.exists():
        try:
            return read_inference_key(path)
        except InferenceKeyError as exc:
            raise ServingConfigError(str(exc)) from exc
    key = secrets.token_urlsafe(32)
    write_inference_key(path, key)
    return key


def server_arguments(repository: Path, models: Sequence[str], secret: str) -> list[str]:
    """What the entrypoint adds to tritonserver's command line."""
    return [
        "--model-repository",
        str(repository),
        "--model-control-mode",
        "explicit",
        *[f"--load-model={name}" for name in models],
        f"--http-restricted-api={','.join(RESTRICTED)}:{AUTH_HEADER}=Bearer {secret}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the repository, settle the secret, exec tritonserver."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-store", type=Path, required=True)
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--load", default="all", help="NAME=FILE.mar,... or all; empty: none")
    parser.add_argument(
        "--also-load", default="", help="models already in the repository to load too"
    )
    parser.add_argument("--inference-key", type=Path, required=True, metavar="FILE")
    parser.add_argument("--gpu", action="store_true", help="GPU instance groups and batching")
    parser.add_argument("--copy", action="store_true", help="copy archives (default: links)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- tritonserver ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the tritonserver command after --")
    load = [entry for entry in args.load.split(",") if entry.strip()]
    serving = GPU_TRITON if args.gpu else TritonServing()
    try:
        args.repository.mkdir(parents=True, exist_ok=True)
        written = write_repository(
            args.repository, args.model_store, load, serving, link=not args.copy
        )
        secret = settle_secret(args.inference_key)
    except ServingConfigError as exc:
        print(f"refusing to start Triton: {exc}", file=sys.stderr)
        return 3
    models = [*written, *(name for name in args.also_load.split(",") if name.strip())]
    argv_out = [*command, *server_arguments(args.repository, models, secret)]
    sys.stdout.flush()
    os.execv(argv_out[0], argv_out)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
