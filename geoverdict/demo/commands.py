"""`geoverdict demo`: parses its options and hands over to demo.run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from geoverdict.demo import run
from geoverdict.demo.exceptions import DemoError
from geoverdict_common.paths import runs_dir

# It starts the local stack (whose prerequisites, TorchServe or Triton, it checks itself) and a
# consumer.
REQUIRES = ("geoverdict_stack", "geoverdict_service")
USER_ERRORS: tuple[type[Exception], ...] = (DemoError,)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` command."""
    demo = subparsers.add_parser(
        "demo",
        help="run everything once: stack, consumer, photos in, verdicts out, stack down",
        description=run.__doc__,
    )
    demo.add_argument("--images", type=Path, help="your own photos (a folder) instead of ours")
    demo.add_argument("--model", type=Path, help="model archive (default: model_store/*.mar)")
    demo.add_argument("--out", type=Path, default=runs_dir() / "demo", help="run folder")
    demo.add_argument("--limit", type=int, default=run.PHOTO_LIMIT, help="at most this many photos")
    demo.add_argument(
        "--model-server",
        choices=("torchserve", "triton"),
        help="the model server to run (default: GEOVERDICT_MODEL_SERVER, else torchserve)",
    )
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    server = args.model_server or os.environ.get("GEOVERDICT_MODEL_SERVER") or "torchserve"
    if server not in ("torchserve", "triton"):
        raise DemoError(f"GEOVERDICT_MODEL_SERVER must be torchserve or triton, got {server!r}")
    options = run.DemoOptions(
        images=args.images, model=args.model, out=args.out, limit=args.limit, model_server=server
    )
    return 0 if run.run(options).answered else 1
