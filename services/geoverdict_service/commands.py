"""`geoverdict consume | publish | watch`: the verdict service and its two small companions."""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
from pathlib import Path

from kafka.errors import KafkaError

from geoverdict_service.exceptions import ServiceError

# A Kafka error after start-up (a send not acknowledged) is one line too, not a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (ServiceError, KafkaError)

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the service's commands."""
    consume = subparsers.add_parser(
        "consume",
        help="run the verdict service (Kafka consumer in front of Redis and TorchServe)",
        description="Settings come from GEOVERDICT_* environment variables; flags override "
        "them. See docs/operations.md for every setting.",
    )
    _kafka_options(consume)
    consume.add_argument("--group-id", help="consumer group (GEOVERDICT_GROUP_ID)")
    consume.add_argument("--input-topic", help="image events (GEOVERDICT_KAFKA_INPUT_TOPIC)")
    consume.add_argument("--verdict-topic", help="verdicts (GEOVERDICT_KAFKA_VERDICT_TOPIC)")
    consume.add_argument(
        "--dead-letter-topic", help="dead letters (GEOVERDICT_KAFKA_DEAD_LETTER_TOPIC)"
    )
    consume.add_argument("--redis-url", help="prediction cache (GEOVERDICT_REDIS_URL)")
    consume.add_argument(
        "--model-server",
        choices=("torchserve", "triton"),
        help="which model server answers (GEOVERDICT_MODEL_SERVER; default torchserve)",
    )
    consume.add_argument("--torchserve-url", help="inference API (GEOVERDICT_TORCHSERVE_URL)")
    consume.add_argument("--triton-url", help="Triton's HTTP API (GEOVERDICT_TRITON_URL)")
    consume.add_argument(
        "--model-name", help="the model server's model name (GEOVERDICT_<SERVER>_MODEL_NAME)"
    )
    consume.add_argument(
        "--torchserve-key-file",
        type=Path,
        help="TorchServe key_file.json (GEOVERDICT_TORCHSERVE_KEY_FILE)",
    )
    consume.add_argument("--metrics-port", type=int, help="/metrics port (GEOVERDICT_METRICS_PORT)")
    consume.add_argument(
        "--processes",
        type=int,
        default=1,
        help="consumer processes in this group (metrics ports: port, port+1, ...)",
    )
    consume.add_argument(
        "--max-idle", type=float, help="stop after this many seconds without a message"
    )
    consume.set_defaults(func=_consume)

    publish = subparsers.add_parser(
        "publish",
        help="publish photos (files, folders, http(s) URLs) as image events",
    )
    publish.add_argument("sources", nargs="+", metavar="PATH_OR_URL")
    _kafka_options(publish)
    publish.add_argument("--topic", help="image event topic (GEOVERDICT_KAFKA_INPUT_TOPIC)")
    publish.add_argument("--claim", metavar="LAT,LON", help="claimed location for every photo")
    publish.add_argument(
        "--no-exif-claim", action="store_true", help="do not take the claim from GPS EXIF"
    )
    publish.set_defaults(func=_publish)

    watch = subparsers.add_parser("watch", help="show verdicts as they arrive")
    _kafka_options(watch)
    watch.add_argument("--topic", help="verdict topic (GEOVERDICT_KAFKA_VERDICT_TOPIC)")
    watch.add_argument("--json", action="store_true", help="raw JSON lines")
    watch.add_argument("--from-beginning", action="store_true", help="replay the whole topic")
    watch.add_argument("--max", type=int, help="stop after this many verdicts")
    watch.add_argument(
        "--timeout", type=float, help="stop after this many seconds without a verdict"
    )
    watch.set_defaults(func=_watch)


def _kafka_options(parser: argparse.ArgumentParser) -> None:
    """The Kafka flags every command shares; the rest (security) comes from the environment."""
    parser.add_argument(
        "--bootstrap-servers", help="Kafka host:port[,...] (GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS)"
    )


def _consume(args: argparse.Namespace) -> int:
    from geoverdict_service.consumer import run_service  # noqa: PLC0415
    from geoverdict_service.settings import (  # noqa: PLC0415
        chosen_model_server,
        load_service_settings,
    )

    if args.processes < 1:
        raise ServiceError(f"--processes must be >= 1, got {args.processes}")
    # The flags of the chosen server only: another's would be refused as inconsistent.
    servers = {
        "torchserve": {"url": args.torchserve_url, "key_file": args.torchserve_key_file},
        "triton": {"url": args.triton_url},
    }
    chosen = chosen_model_server(args.model_server)
    servers[chosen]["model_name"] = args.model_name
    settings = load_service_settings(
        kafka={
            "bootstrap_servers": args.bootstrap_servers,
            "input_topic": args.input_topic,
            "verdict_topic": args.verdict_topic,
            "dead_letter_topic": args.dead_letter_topic,
        },
        torchserve=servers["torchserve"],
        triton=servers["triton"],
        model_server=chosen,
        group_id=args.group_id,
        redis_url=args.redis_url,
        metrics_port=args.metrics_port,
    )
    if args.processes == 1:
        run_service(settings, max_idle_s=args.max_idle)
        return 0
    # Several members of one consumer group; Kafka shares the partitions among them.
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for index in range(args.processes):
        port = settings.metrics_port + index if settings.metrics_port else 0
        member = settings.model_copy(update={"metrics_port": port})
        proc = ctx.Process(target=run_service, args=(member,), kwargs={"max_idle_s": args.max_idle})
        proc.start()
        procs.append(proc)
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join()
    return max((p.exitcode or 0) for p in procs)


def _publish(args: argparse.Namespace) -> int:
    from geoverdict_service.kafka_clients import check_cluster, make_producer  # noqa: PLC0415
    from geoverdict_service.publisher import publish  # noqa: PLC0415
    from geoverdict_service.settings import load_kafka_settings  # noqa: PLC0415

    claim = None
    if args.claim:
        try:
            lat, lon = (float(part) for part in args.claim.split(","))
        except ValueError as exc:
            raise ServiceError(f"--claim must be LAT,LON, got {args.claim!r}") from exc
        claim = (lat, lon)
    kafka = load_kafka_settings(bootstrap_servers=args.bootstrap_servers, input_topic=args.topic)
    api_version = check_cluster(kafka, {"input_topic": kafka.input_topic})
    producer = make_producer(kafka, api_version=api_version, acks="all", linger_ms=5)
    try:
        result = publish(
            producer, kafka.input_topic, args.sources, claim=claim, use_exif=not args.no_exif_claim
        )
    finally:
        producer.close()
    for source, reason in result.skipped.items():
        print(f"skipped {source}: {reason}", file=sys.stderr)
    print(f"published {len(result.event_ids)} events to {kafka.input_topic}", file=sys.stderr)
    return 0 if result.event_ids else 1


def _watch(args: argparse.Namespace) -> int:
    from geoverdict_service.kafka_clients import check_cluster, make_subscriber  # noqa: PLC0415
    from geoverdict_service.settings import load_kafka_settings  # noqa: PLC0415
    from geoverdict_service.watcher import HEADER, format_row, verdicts  # noqa: PLC0415

    kafka = load_kafka_settings(bootstrap_servers=args.bootstrap_servers, verdict_topic=args.topic)
    api_version = check_cluster(kafka, {"verdict_topic": kafka.verdict_topic})
    consumer = make_subscriber(
        kafka,
        api_version=api_version,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(args.timeout * 1000) if args.timeout else float("inf"),
    )
    consumer.subscribe([kafka.verdict_topic])
    if not args.json:
        print(HEADER)
    try:
        for verdict in verdicts(consumer, args.max):
            print(json.dumps(verdict) if args.json else format_row(verdict), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0
