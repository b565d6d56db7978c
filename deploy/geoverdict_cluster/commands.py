"""`geoverdict cluster build | up | proof | down`: the Helm chart on a one-node Kubernetes
cluster built from official sources, and the proof that KEDA scales its consumers on lag."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
from pathlib import Path

from geoverdict_cluster.exceptions import ClusterError
from geoverdict_images.exceptions import ImagesError

# The proof runs podman and kcat through the images' helpers, whose errors are in words too.
USER_ERRORS: tuple[type[Exception], ...] = (ClusterError, ImagesError)
# The proof publishes photos made by the images' checks, as events the service defines.
REQUIRES = ("geoverdict_images", "geoverdict_service")

log = logging.getLogger(__name__)

SCRIPTS = {"build": "build.sh", "up": "up.sh", "down": "down.sh"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cluster build`, `cluster up`, `cluster proof` and `cluster down`."""
    cluster = subparsers.add_parser(
        "cluster",
        help="the Helm chart on a one-node Kubernetes cluster, KEDA scaling it on lag",
        description="A one-node Kubernetes 1.34 cluster as plain processes (etcd, the control "
        "plane, containerd, a kubelet, kube-proxy, CoreDNS, KEDA), built once from the Go "
        "module proxy into .cache/cluster/ (deploy/cluster/). Needs root, podman's images "
        "(`geoverdict images build --stand-ins`) and Debian's etcd-server, containerd, runc "
        "and containernetworking-plugins. docs/operations.md, 'A one-node cluster'.",
    )
    sub = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    sub.add_parser("build", help="build the binaries once (about 20 minutes on 2 cores)")
    sub.add_parser("up", help="start the cluster and load the images (idempotent)")
    proof = sub.add_parser(
        "proof", help="install the chart, flood it with events, watch KEDA scale up and down"
    )
    proof.add_argument("--events", type=int, default=3000, help="photos to publish")
    proof.add_argument(
        "--no-crash",
        dest="crash",
        action="store_false",
        help="do not SIGKILL a consumer midway (by default one is, a third of the way in)",
    )
    proof.add_argument(
        "--output", type=Path, default=Path("bench/cluster.json"), help="the result's JSON"
    )
    sub.add_parser("down", help="stop every process of the cluster and its pods")
    cluster.set_defaults(func=_cluster)


def _script(name: str) -> None:
    from geoverdict_common.paths import project_dir  # noqa: PLC0415

    script = project_dir() / "deploy" / "cluster" / SCRIPTS[name]
    if subprocess.run([str(script)], check=False).returncode != 0:
        raise ClusterError(f"{script.name} failed (its output is above)")


def _cluster(args: argparse.Namespace) -> int:
    if args.cluster_command != "proof":
        _script(args.cluster_command)
        return 0
    from geoverdict_cluster.proof import prove  # noqa: PLC0415

    result = prove(args.events, crash=args.crash)
    text = json.dumps(result.to_json(), indent=2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(text)
    scaled = result.max_replicas > 1 and result.back_to_min_after_s is not None
    return 0 if scaled and result.missing == 0 and result.duplicated == 0 else 1
