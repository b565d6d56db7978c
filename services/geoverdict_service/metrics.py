"""Prometheus metrics of the verdict service (prefix geoverdict_) and its HTTP endpoints:
/metrics, /healthz (the loop is alive) and /readyz (partitions assigned, TorchServe and Redis
reachable)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    exposition,
)

# Inference on CPU takes tens to hundreds of ms per image; end to end adds queueing in Kafka.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# Every dead-letter reason the service can give; exported at 0 from the start so rates and
# alerts work before the first one happens.
DEAD_LETTER_REASONS = (
    "invalid_json",
    "schema_violation",
    "fetch_disallowed",
    "fetch_failed",
    "fetch_timeout",
    "fetch_too_large",
    "fetch_not_found",
    "image_empty",
    "image_undecodable",
    "image_truncated",
    "image_too_large",
    "image_too_many_pixels",
    "image_unsupported",
    "image_internal",
    "image_inference_failed",
    "invalid_prediction",
    "internal",
    "too_large",
)
CACHE_ERROR_OPERATIONS = ("get", "set", "invalid")  # invalid: an entry breaking the contract
SCENES = ("indoor", "natural", "urban")
CLAIM_SOURCES = ("event", "exif", "c2pa")
# What the near-duplicate index said of a photo (provenance.index, "match" when it found one).
NEAR_DUPLICATE_RESULTS = ("match", "none", "unavailable", "unusable")
C2PA_STATES = ("absent", "valid", "untrusted", "invalid")
CACHE_RESULTS = ("hit", "near_duplicate", "miss")


TRANSACTION_RESULTS = ("committed", "aborted", "fenced")


class Metrics:
    """Every metric the service exposes, on its own registry (tests make several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("geoverdict_events_consumed", "Image events consumed.", registry=r)
        self.verdicts = Counter(
            "geoverdict_verdicts_produced",
            "Verdicts acknowledged by Kafka.",
            ["cache"],
            registry=r,
        )
        self.dead_letters = Counter(
            "geoverdict_dead_letters",
            "Events sent to the dead-letter topic.",
            ["reason"],
            registry=r,
        )
        self.cache_requests = Counter(
            "geoverdict_cache_requests",
            "Cache lookups by result (hit, miss).",
            ["result"],
            registry=r,
        )
        self.cache_errors = Counter(
            "geoverdict_cache_errors",
            "Redis operations that failed, and entries refused as invalid.",
            ["operation"],
            registry=r,
        )
        self.inference_requests = Counter(
            "geoverdict_inference_requests", "Images sent to TorchServe.", registry=r
        )
        self.inference_unavailable = Counter(
            "geoverdict_inference_unavailable",
            "Times TorchServe was unavailable after retries.",
            registry=r,
        )
        self.inference_latency = Histogram(
            "geoverdict_inference_latency_seconds",
            "TorchServe request latency per image.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "geoverdict_end_to_end_latency_seconds",
            "From the event's time (or its Kafka timestamp) to its verdict acknowledged.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "geoverdict_batch_size", "Events per polled batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.in_flight = Gauge(
            "geoverdict_inference_in_flight", "Images at TorchServe right now.", registry=r
        )
        self.lag = Gauge(
            "geoverdict_consumer_lag",
            "Messages behind the partition's end.",
            ["topic", "partition"],
            registry=r,
        )
        self.paused = Gauge(
            "geoverdict_paused_partitions",
            "Partitions paused while the model server is down.",
            registry=r,
        )
        self.assigned = Gauge(
            "geoverdict_assigned_partitions", "Partitions assigned to this consumer.", registry=r
        )
        self.mismatches = Counter(
            "geoverdict_location_mismatches",
            "Verdicts flagging a claimed location.",
            ["claim_source"],
            registry=r,
        )
        self.scenes = Counter(
            "geoverdict_scene_verdicts", "Verdicts by top-level scene.", ["scene"], registry=r
        )
        # exactly_once: each partition's batch is one transaction (committed, aborted and
        # come again, or fenced: the partition taken over by another consumer)
        self.transactions = Counter(
            "geoverdict_transactions",
            "Kafka transactions, by how they ended.",
            ["result"],
            registry=r,
        )
        self.transaction_seconds = Histogram(
            "geoverdict_transaction_seconds",
            "One partition's transaction, from begin to commit.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=r,
        )
        self.transactional_producers = Gauge(
            "geoverdict_transactional_producers",
            "Transactional producers open (one per assigned partition with exactly_once).",
            registry=r,
        )
        # provenance: earlier appearances, recycled claims, Content Credentials
        self.near_duplicates = Counter(
            "geoverdict_near_duplicate_lookups",
            "Near-duplicate index lookups by result (match, none, unavailable, unusable).",
            ["result"],
            registry=r,
        )
        self.recycled_claims = Counter(
            "geoverdict_recycled_claims",
            "Verdicts whose photo was posted before with a claim far from this one's.",
            registry=r,
        )
        self.c2pa_states = Counter(
            "geoverdict_c2pa_verdicts",
            "Verdicts by the state of the photo's Content Credentials.",
            ["state"],
            registry=r,
        )
        self.ai_generated = Counter(
            "geoverdict_c2pa_ai_generated",
            "Verdicts whose Content Credentials declare the photo made by a generative model.",
            registry=r,
        )
        self.provenance_seconds = Histogram(
            "geoverdict_provenance_seconds",
            "A batch's provenance: fingerprints, Content Credentials and the index lookup.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.model = Info("geoverdict_model", "The model version producing verdicts.", registry=r)
        self.last_loop = Gauge(
            "geoverdict_last_loop_timestamp_seconds", "When the poll loop last ran.", registry=r
        )
        self._initialise_labels()

    def _initialise_labels(self) -> None:
        """Create every known label combination at 0, so series exist before their events."""
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason=reason)
        for result in CACHE_RESULTS:
            self.cache_requests.labels(result=result)
            self.verdicts.labels(cache=result)
        for result in NEAR_DUPLICATE_RESULTS:
            self.near_duplicates.labels(result=result)
        for state in C2PA_STATES:
            self.c2pa_states.labels(state=state)
        for operation in CACHE_ERROR_OPERATIONS:
            self.cache_errors.labels(operation=operation)
        for source in CLAIM_SOURCES:
            self.mismatches.labels(claim_source=source)
        for scene in SCENES:
            self.scenes.labels(scene=scene)
        for result in TRANSACTION_RESULTS:
            self.transactions.labels(result=result)


class HealthServer:
    """A tiny HTTP server for /metrics, /healthz and /readyz on its own thread."""

    def __init__(
        self,
        metrics: Metrics,
        host: str,
        port: int,
        alive: Callable[[], bool],
        ready: Callable[[], tuple[bool, dict[str, bool]]],
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body = exposition.generate_latest(metrics.registry)
                    self._send(200, body, exposition.CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = outer.alive()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"stalled\n", "text/plain")
                elif path == "/readyz":
                    ok, checks = outer.ready()
                    body = json.dumps({"ready": ok, **checks}).encode()
                    self._send(200 if ok else 503, body, "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes every few seconds would flood the log

        self.alive = alive
        self.ready = ready
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        # A short poll interval: stop() (shutdown at SIGTERM) returns within 50 ms, not 0.5 s.
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="health", daemon=True
        )

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def loop_alive(metrics: Metrics, stall_after_s: float) -> Callable[[], bool]:
    """A /healthz check: the poll loop ran within `stall_after_s`."""

    def check() -> bool:
        last = metrics.last_loop._value.get()
        return bool(last) and time.time() - last < stall_after_s

    return check
