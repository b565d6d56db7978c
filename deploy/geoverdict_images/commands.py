"""`geoverdict images build | check`: the project's images built with podman (on stand-in bases
where registries cannot be reached) and each made to do its job."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from geoverdict_images.exceptions import ImagesError

USER_ERRORS: tuple[type[Exception], ...] = (ImagesError,)
# Building needs the stack (the checks start it) and the demo's archive lookup.
REQUIRES = ("geoverdict_stack", "geoverdict_service")

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `images build` and `images check`."""
    from geoverdict_images.images import IMAGES  # noqa: PLC0415

    images = subparsers.add_parser(
        "images",
        help="build the project's images with podman and check each does its job",
        description="Builds deploy/consumer, deploy/torchserve and deploy/triton with podman "
        "(--runtime runc, no default ulimits). --stand-ins builds them on stand-in bases made "
        "from Debian's and Ubuntu's archives (deploy/stand-ins/README.md) where the official "
        "bases cannot be pulled. docs/operations.md, 'Images'.",
    )
    sub = images.add_subparsers(dest="images_command", required=True, metavar="ACTION")
    build = sub.add_parser("build", help="build images (default: all three)")
    build.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(IMAGES)}")
    build.add_argument("--stand-ins", action="store_true", help="on the stand-in bases")
    build.set_defaults(func=_build)
    stand_ins = sub.add_parser(
        "stand-ins",
        help="build the stand-ins for third-party images (compose's and the cluster's)",
    )
    stand_ins.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="default: every one docker-compose or the "
        "cluster runs (kafka, redis, redis-exporter, prometheus, nginx, pause)",
    )
    stand_ins.set_defaults(func=_stand_ins)
    check = sub.add_parser("check", help="start an image and make it do its job")
    check.add_argument("name", choices=["consumer", "torchserve", "triton"], help="which image")
    check.add_argument("--photos", type=int, default=24, help="events to publish")
    check.set_defaults(func=_check)
    compose = sub.add_parser(
        "compose",
        help="docker-compose.yml under podman-compose, with stand-ins for third-party images",
        description="Runs docker-compose.yml with docker-compose.stand-ins.yml under Debian's "
        "podman-compose, starting services in dependency order and waiting on their "
        "conditions. `up` builds the stand-ins first; the project's images come from "
        "`geoverdict images build --stand-ins`.",
    )
    compose_sub = compose.add_subparsers(dest="compose_command", required=True, metavar="ACTION")
    compose_sub.add_parser("up", help="build the stand-ins, create and start the services")
    compose_check = compose_sub.add_parser(
        "check", help="publish photos to the running deployment; count the verdicts"
    )
    compose_check.add_argument("--photos", type=int, default=60, help="events to publish")
    compose_check.add_argument("--output", type=Path, help="write the result as JSON here too")
    compose_sub.add_parser("down", help="remove the containers, the volumes and the network")
    compose.set_defaults(func=_compose)


def _build(args: argparse.Namespace) -> int:
    from geoverdict_images.images import IMAGES, build  # noqa: PLC0415
    from geoverdict_images.podman import Podman  # noqa: PLC0415

    unknown = sorted(set(args.names) - set(IMAGES))
    if unknown:
        raise ImagesError(f"no image {', '.join(unknown)}; the images are {', '.join(IMAGES)}")
    podman = Podman()
    for name in args.names or list(IMAGES):
        built = build(podman, IMAGES[name], stand_in=args.stand_ins)
        print(f"{built.image}: {built.size_mb:,.0f} MB in {built.seconds:.0f} s (on {built.base})")
    return 0


def _stand_ins(args: argparse.Namespace) -> int:
    from geoverdict_images.images import STAND_INS, ensure_stand_in  # noqa: PLC0415
    from geoverdict_images.podman import Podman  # noqa: PLC0415

    servers = {n: s for n, s in STAND_INS.items() if s.alias}
    unknown = sorted(set(args.names) - set(servers))
    if unknown:
        raise ImagesError(f"no stand-in {', '.join(unknown)}; they are {', '.join(servers)}")
    podman = Podman()
    for name in args.names or list(servers):
        stand_in = servers[name]
        started = time.monotonic()
        ensure_stand_in(podman, stand_in)
        print(f"{stand_in.alias}: for {stand_in.replaces} ({time.monotonic() - started:.0f} s)")
    return 0


def _check(args: argparse.Namespace) -> int:
    from geoverdict_images.checks import (  # noqa: PLC0415
        check_consumer,
        check_torchserve,
        check_triton,
        photos,
    )
    from geoverdict_images.images import IMAGES  # noqa: PLC0415
    from geoverdict_images.podman import Podman  # noqa: PLC0415

    podman = Podman()
    image = IMAGES[args.name].tag
    if not podman.exists(image):
        raise ImagesError(f"no image {image}: `geoverdict images build {args.name}` first")
    if args.name in ("torchserve", "triton"):
        check = check_torchserve if args.name == "torchserve" else check_triton
        served = check(podman, image, photos(1)[0])
        print(json.dumps(served.to_json(), indent=2))
        refused = served.status_without_key in (400, 401, 403)
        return 0 if refused and served.status_with_key == 200 else 1
    result = check_consumer(podman, image, photos(args.photos))
    print(json.dumps(result.to_json(), indent=2))
    return 0 if result.missing == 0 and result.duplicated == 0 else 1


def _compose(args: argparse.Namespace) -> int:
    from geoverdict_images.checks import photos  # noqa: PLC0415
    from geoverdict_images.compose import Compose, check  # noqa: PLC0415
    from geoverdict_images.images import COMPOSE_STAND_INS, IMAGES, ensure_stand_in  # noqa: PLC0415
    from geoverdict_images.podman import Podman  # noqa: PLC0415

    podman = Podman()
    compose = Compose(podman)
    if args.compose_command == "down":
        compose.down()
        return 0
    state = Path(".run") / "compose-up.json"  # when `up` finished, for `check` to report
    if args.compose_command == "up":
        for name in ("consumer", "torchserve"):
            if not podman.exists(IMAGES[name].tag):
                raise ImagesError(
                    f"no image {IMAGES[name].tag}: `geoverdict images build --stand-ins {name}`"
                )
        started = time.monotonic()
        for stand_in in COMPOSE_STAND_INS:
            print(f"{stand_in.alias}: stand-in for {stand_in.replaces}")
            ensure_stand_in(podman, stand_in)
        built = time.monotonic()
        names = compose.up()
        up_s = round(time.monotonic() - built, 1)
        state.parent.mkdir(exist_ok=True)
        state.write_text(json.dumps({"up_s": up_s}))
        print(
            f"started {', '.join(names)} in {up_s:.0f} s (stand-ins ready in "
            f"{built - started:.0f} s); Prometheus on http://127.0.0.1:9090"
        )
        return 0
    up_s = json.loads(state.read_text())["up_s"] if state.is_file() else -1.0
    result = check(compose, photos(args.photos), up_s)
    text = json.dumps(result.to_json(), indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    scraped = all(result.scraped.get(j) == "up" for j in ("geoverdict-consumer", "torchserve"))
    return 0 if result.missing == 0 and result.duplicated == 0 and scraped else 1
