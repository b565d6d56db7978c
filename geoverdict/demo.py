"""`geoverdict demo`: the main job on a fresh machine, start to finish, leaving nothing running."""

from __future__ import annotations

import argparse
import time

from geoverdict.paths import runs_dir


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` command."""
    demo = subparsers.add_parser(
        "demo",
        help="bring the local stack up, show it healthy, bring it down",
        description="Starts real Kafka, Redis and TorchServe on free ports, shows each "
        "server's health, then stops everything.",
    )
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status."""
    from geoverdict_stack.stack import Stack, StackConfig, format_status, sigterm_as_exit  # noqa: PLC0415

    config = StackConfig.with_free_ports(run_dir=runs_dir() / "demo")
    started = time.monotonic()
    print(f"starting Kafka, Redis and TorchServe (logs in {config.run_dir}) ...", flush=True)
    with sigterm_as_exit(), Stack(config) as stack:
        rows = stack.status()
        print(format_status(rows))
        healthy = all(row.healthy for row in rows)
        print("stopping the stack ...", flush=True)
    print(f"demo finished in {time.monotonic() - started:.1f} s; nothing left running")
    return 0 if healthy else 1
