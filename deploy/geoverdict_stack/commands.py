"""`geoverdict stack up | down | status | env | check | fetch | certs`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from geoverdict_stack.exceptions import StackError

USER_ERRORS: tuple[type[Exception], ...] = (StackError,)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `stack` command and its subcommands."""
    stack = subparsers.add_parser(
        "stack",
        help="run Kafka, Redis and a model server locally as plain processes",
        description="Start, inspect and stop the local stack (real Kafka 4 KRaft, Redis, "
        "TorchServe 0.12 with token authorization or Triton 2.51 with a secret header). Data "
        "and logs live in one run folder.",
    )
    sub = stack.add_subparsers(dest="stack_command", required=True, metavar="ACTION")

    up = sub.add_parser("up", help="start the servers and wait until each answers")
    _run_dir_option(up)
    up.add_argument("--free-ports", action="store_true", help="use free ports, not 9092/6379/8080")
    up.add_argument(
        "--services",
        nargs="+",
        choices=("kafka", "redis", "torchserve", "triton"),
        help="which servers to start (default: kafka, redis and the --model-server)",
    )
    up.add_argument(
        "--model-server",
        choices=("torchserve", "triton"),
        default="torchserve",
        help="the model server to start (default torchserve; triton: the tritonserver of the "
        "pinned nvidia-pytriton, serving the same archives)",
    )
    up.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]ARCHIVE.mar",
        help="model archive for TorchServe to load: a file of --model-store, or a path (its "
        "folder's SHA256SUMS must list it); repeatable",
    )
    up.add_argument(
        "--model-store", type=Path, help="TorchServe model store (default model_store/)"
    )
    up.add_argument(
        "--enable-model-api",
        action="store_true",
        help="allow registering models over TorchServe's management API (off by default)",
    )
    up.add_argument("--timeout", type=float, default=120.0, help="start timeout per server, s")
    up.add_argument(
        "--gpus",
        type=int,
        default=0,
        metavar="N",
        help="serve the models on N GPUs with the GPU batch size, delay and workers per GPU "
        "(docs/operations.md, GPU serving)",
    )
    up.set_defaults(func=_up)

    down = sub.add_parser("down", help="stop every process the stack started")
    _run_dir_option(down)
    down.set_defaults(func=_down)

    status = sub.add_parser("status", help="show each server's health")
    _run_dir_option(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    check = sub.add_parser("check", help="check Java, redis-server, TorchServe and the Kafka jars")
    check.set_defaults(func=_check)

    fetch = sub.add_parser("fetch", help="fetch the Kafka jars from Maven Central (cached)")
    fetch.set_defaults(func=_fetch)

    env = sub.add_parser(
        "env",
        help="print the GEOVERDICT_* settings that point the service's commands at this stack",
        description='eval "$(geoverdict stack env)" then run consume, publish, watch.',
    )
    _run_dir_option(env)
    env.set_defaults(func=_env)

    certs = sub.add_parser(
        "certs",
        help="make a CA and Kafka's TLS certificate (docker-compose.secure.yml mounts them)",
    )
    certs.add_argument("--out", type=Path, default=Path("deploy/secrets/kafka"))
    certs.add_argument(
        "--host",
        action="append",
        required=True,
        help="a name or address producers use to reach Kafka (repeatable)",
    )
    certs.add_argument("--days", type=int, default=365)
    certs.set_defaults(func=_certs)


def _run_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, help="run folder (default .run/stack)")


def _up(args: argparse.Namespace) -> int:
    from geoverdict_stack.stack import (  # noqa: PLC0415
        Stack,
        StackConfig,
        format_status,
        models_in_store,
    )

    models, store = models_in_store(args.model, args.model_store)
    options: dict[str, object] = {
        "services": tuple(args.services or ("kafka", "redis", args.model_server)),
        "models": models,
        "model_store": store,
        "enable_model_api": args.enable_model_api,
        "start_timeout_s": args.timeout,
    }
    if args.run_dir:
        options["run_dir"] = args.run_dir.resolve()
    config = StackConfig.with_free_ports(**options) if args.free_ports else StackConfig(**options)  # type: ignore[arg-type]
    stack = Stack(config)
    if args.gpus:
        stack.torchserve.overrides.update(_gpu_properties(config.models, args.gpus))
    stack.up()
    print(format_status(stack.status()))
    print(f"run folder: {config.run_dir}  (stop with `geoverdict stack down`)")
    env = " --run-dir " + shlex.quote(str(config.run_dir)) if args.run_dir else ""
    print(f'settings for consume, publish and watch: eval "$(geoverdict stack env{env})"')
    return 0


def _env(args: argparse.Namespace) -> int:
    from geoverdict_stack.stack import Stack  # noqa: PLC0415

    stack = Stack.attach(args.run_dir)
    for name, value in stack.client_environment().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _gpu_properties(models: tuple[str, ...], gpus: int) -> dict[str, str]:
    """TorchServe's GPU entries for the models to load (geoverdict_modelserver.torchserve_gpu:
    the same ones the GPU image appends to its configuration)."""
    from geoverdict_common.exceptions import ServingConfigError  # noqa: PLC0415
    from geoverdict_modelserver.model_load import model_archives  # noqa: PLC0415
    from geoverdict_modelserver.torchserve_gpu import gpu_properties  # noqa: PLC0415

    try:
        return gpu_properties(model_archives(models), gpus)
    except ServingConfigError as exc:
        raise StackError(f"--gpus: {exc}") from exc


def _down(args: argparse.Namespace) -> int:
    from geoverdict_stack.exceptions import NotRunningError  # noqa: PLC0415
    from geoverdict_stack.stack import Stack  # noqa: PLC0415

    try:
        stack = Stack.attach(args.run_dir)
    except NotRunningError as exc:
        print(f"nothing to stop: {exc}")
        return 0
    stack.down()
    print("stack stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    from geoverdict_stack.stack import Stack, format_status  # noqa: PLC0415

    stack = Stack.attach(args.run_dir)
    rows = stack.status()
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        print(format_status(rows))
    return 0 if all(row.healthy for row in rows) else 1


def _check(args: argparse.Namespace) -> int:
    from geoverdict_stack import prerequisites  # noqa: PLC0415

    for item in prerequisites.check_all():
        print(f"ok  {item.name:<13} {item.version:<8} {item.path}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from geoverdict_stack import prerequisites  # noqa: PLC0415

    libs = prerequisites.kafka_jars(fetch=True)
    print(f"Kafka {prerequisites.kafka_version()} jars in {libs}", file=sys.stderr)
    return 0


def _certs(args: argparse.Namespace) -> int:
    from geoverdict_stack.tls import make_certificates  # noqa: PLC0415

    made = make_certificates(args.out, tuple(args.host), days=args.days)
    print(f"CA (give it to clients: GEOVERDICT_KAFKA_SSL_CAFILE): {made.ca}")
    print(f"Kafka's key and certificate: {made.keystore}")
    print(f"keep the CA's key offline or delete it: {made.ca_key}")
    return 0
