"""The usual example consumer, for comparison: one message at a time, one HTTP request per
message (a new connection each), auto-commit, no cache, no batching, no concurrency."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

from geoverdict_common.inference_key import read_inference_key


def run_naive(
    bootstrap: str,
    input_topic: str,
    verdict_topic: str,
    group_id: str,
    predictions_url: str,
    key_file: Path,
    expected: int,
    timeout_s: float,
) -> int:
    """Consume until `expected` verdicts were sent or `timeout_s` passed; returns the count."""
    token = read_inference_key(key_file)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    consumer = KafkaConsumer(
        input_topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=True,
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    done = 0
    deadline = time.monotonic() + timeout_s
    while done < expected and time.monotonic() < deadline:
        for message in consumer:
            event = json.loads(message.value)
            image = base64.b64decode(event["data"]["image"]["base64"])
            request = urllib.request.Request(predictions_url, data=image, headers=headers)
            with urllib.request.urlopen(request, timeout=60) as resp:
                prediction = json.loads(resp.read())
            verdict = {"id": event["id"], "prediction": prediction}
            producer.send(
                verdict_topic, key=event["id"].encode(), value=json.dumps(verdict).encode()
            )
            done += 1
            if done >= expected or time.monotonic() > deadline:
                break
    producer.flush()
    producer.close()
    consumer.close()
    return done
