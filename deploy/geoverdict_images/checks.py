"""Each image started and made to do its job, as docker-compose and the Helm chart run it:
non-root, read-only root file system, every capability dropped, secrets mounted read-only.

The consumer image answers events from the local stack's Kafka (the stack started here on free
ports, serving the model store's demo archive): photos are published from this machine and the
verdicts counted by kcat reading read_committed, as a subscriber would."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from geoverdict_images.exceptions import ImagesError
from geoverdict_images.podman import Podman

log = logging.getLogger(__name__)

HARDENING = ("--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only", "--tmpfs=/tmp")


@dataclass(frozen=True)
class ConsumerCheck:
    """What the consumer image did against the local stack."""

    image: str
    user: str  # `id -u` in the image: never 0
    events: int
    verdicts: int  # read_committed, by kcat
    dead_letters: int
    missing: int
    duplicated: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def user_of(podman: Podman, image: str) -> str:
    """The uid the image runs as; ImagesError when it is root."""
    out = podman.run("run", "--rm", "--entrypoint", "id", image, "-u", capture=True)
    uid = out.stdout.decode().strip()
    if uid == "0":
        raise ImagesError(f"{image} runs as root")
    return uid


def photos(count: int) -> list[bytes]:
    """`count` distinct small JPEGs (the model answers any photo)."""
    import io  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(small).resize((320, 240), Image.Resampling.BICUBIC).save(buffer, "JPEG")
        out.append(buffer.getvalue())
    return out


def check_consumer(
    podman: Podman, image: str, photos: list[bytes], timeout_s: float = 180.0
) -> ConsumerCheck:
    """Start the local stack, run the consumer image against it, publish `photos`, count the
    verdicts with kcat."""
    from geoverdict_common.paths import model_store_dir  # noqa: PLC0415
    from geoverdict_stack.stack import Stack, StackConfig  # noqa: PLC0415

    kcat = shutil.which("kcat")
    if kcat is None:
        raise ImagesError("kcat is not installed (apt-get install -y kcat)")
    uid = user_of(podman, image)
    archive = model_store_dir() / "geoverdict.mar"
    if not archive.is_file():
        raise ImagesError(f"no demo archive at {archive}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="geoverdict-images-") as run_dir:
        config = StackConfig.with_free_ports(
            run_dir=Path(run_dir),
            model_store=archive.parent,
            models=(f"geoverdict={archive.name}",),
        )
        with Stack(config) as stack:
            env = stack.client_environment()
            key = Path(env.pop("GEOVERDICT_TORCHSERVE_KEY_FILE"))
            name = f"geoverdict-consumer-check-{uuid.uuid4().hex[:8]}"
            args = ["run", "-d", "--name", name, "--network=host", *HARDENING]
            args += [
                "-v",
                f"{key.parent}:/keys:ro",
                "-e",
                "GEOVERDICT_TORCHSERVE_KEY_FILE=/keys/" + key.name,
            ]
            for variable, value in {**env, "GEOVERDICT_METRICS_PORT": "0"}.items():
                args += ["-e", f"{variable}={value}"]
            podman.run(*args, image, "--max-idle", "30")
            try:
                ids = publish(stack.kafka_bootstrap, config.kafka_topics[0], photos, "image-check")
                keys = wait_for_keys(
                    kcat, stack.kafka_bootstrap, config.kafka_topics[1:], ids, timeout_s
                )
            except BaseException:
                log.error("consumer log:\n%s", _logs(podman, name))
                raise
            finally:
                podman.run("rm", "-f", name)
    counted = tally(ids, *keys)
    return ConsumerCheck(
        image=image,
        user=uid,
        events=len(ids),
        verdicts=counted.verdicts,
        dead_letters=counted.dead_letters,
        missing=counted.missing,
        duplicated=counted.duplicated,
        seconds=round(time.monotonic() - started, 1),
    )


def publish(bootstrap: str, topic: str, photos: list[bytes], post_prefix: str) -> list[str]:
    """Each photo as an image event (posts `post_prefix`-0, -1, ...), flushed; their ids."""
    from kafka import KafkaProducer  # noqa: PLC0415

    from geoverdict_service.events import make_event  # noqa: PLC0415

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    ids = []
    for k, photo in enumerate(photos):
        event = make_event(f"{post_prefix}-{k}", image_bytes=photo)
        ids.append(str(event["id"]))
        producer.send(topic, json.dumps(event).encode())
    producer.flush()
    producer.close()
    return ids


@dataclass(frozen=True)
class Tally:
    """How the events `ids` were answered, from the keys read off the verdict and dead-letter
    topics (keys of other events ignored)."""

    verdicts: int
    dead_letters: int
    missing: int
    duplicated: int


def tally(ids: Iterable[str], verdicts: list[str], dead: list[str]) -> Tally:
    wanted = set(ids)
    mine = [k for k in verdicts if k in wanted], [k for k in dead if k in wanted]
    answered = mine[0] + mine[1]
    return Tally(
        verdicts=len(mine[0]),
        dead_letters=len(mine[1]),
        missing=len(wanted - set(answered)),
        duplicated=len(answered) - len(set(answered)),
    )


def wait_for_keys(
    kcat: str, bootstrap: str, topics: tuple[str, ...], ids: Iterable[str], timeout_s: float
) -> tuple[list[str], list[str]]:
    """The record keys of the verdict and dead-letter topics, once every one of `ids` is among
    them or `timeout_s` has passed."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout_s
    while True:
        verdicts, dead = answer_keys(kcat, bootstrap, topics)
        if wanted <= set(verdicts + dead) or time.monotonic() > deadline:
            return verdicts, dead
        time.sleep(2.0)


def answer_keys(kcat: str, bootstrap: str, topics: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Every record key of the verdict and the dead-letter topic (`topics`, in that order),
    read by kcat as a subscriber would: read_committed, from the beginning."""
    verdicts, dead = (_keys(kcat, bootstrap, topic) for topic in topics)
    return verdicts, dead


def _keys(kcat: str, bootstrap: str, topic: str) -> list[str]:
    command = [kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q"]
    command += ["-X", "isolation.level=read_committed", "-f", "%k\\n"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise ImagesError(f"kcat could not read {topic}: {done.stderr.strip()}")
    return [line for line in done.stdout.splitlines() if line]


def _logs(podman: Podman, name: str) -> str:
    try:
        return podman.run("logs", "--tail", "40", name, capture=True).stdout.decode(
            errors="replace"
        )
    except ImagesError as exc:
        return str(exc)


@dataclass(frozen=True)
class ModelServerCheck:
    """What a model-server image did: healthy, refusing requests without the key, answering
    with it."""

    image: str
    user: str
    healthy_after_s: float
    status_without_key: int  # HTTP status of a prediction without the inference key
    status_with_key: int
    model_version: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_torchserve(
    podman: Podman, image: str, photo: bytes, timeout_s: float = 240.0
) -> ModelServerCheck:
    """The TorchServe image as docker-compose runs it (read-only, tmpfs logs and keys, the
    inference key written to a mounted folder): its own health check passes, a prediction
    without the key is refused, one with the key is answered."""
    from geoverdict_common.inference_key import read_inference_key  # noqa: PLC0415
    from geoverdict_stack.ports import free_ports  # noqa: PLC0415

    uid = user_of(podman, image)
    (port,) = free_ports(1)
    name = f"geoverdict-torchserve-check-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="geoverdict-keys-") as keys:
        Path(keys).chmod(0o777)  # the image's model-server user writes the inference key here
        args = ["run", "-d", "--name", name, *HARDENING]
        # plain tmpfs, as docker-compose.yml has them (the Dockerfile's note on their mode)
        args += [f"--tmpfs=/home/model-server/{d}" for d in ("logs", "keys")]
        args += ["-v", f"{keys}:/home/model-server/inference-key", "-p", f"127.0.0.1:{port}:8080"]
        podman.run(*args, image)
        try:
            started = time.monotonic()
            health = ["exec", name, "python", "-m", "geoverdict_modelserver.torchserve_health"]
            _wait_for(lambda: podman.succeeds(*health), timeout_s, f"{image} never became healthy")
            healthy_after = round(time.monotonic() - started, 1)
            url = f"http://127.0.0.1:{port}/predictions/geoverdict"
            without, _ = _post(url, photo, {})
            key = read_inference_key(Path(keys) / "key_file.json")
            with_key, body = _post(url, photo, {"Authorization": f"Bearer {key}"})
        except BaseException:
            log.error("torchserve log:\n%s", _logs(podman, name))
            raise
        finally:
            podman.run("rm", "-f", name)
    version = json.loads(body).get("model_version", "") if with_key == 200 else ""
    return ModelServerCheck(image, uid, healthy_after, without, with_key, version)


def _wait_for(condition: Callable[[], bool], timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise ImagesError(f"{message} within {timeout_s:.0f} s")
        time.sleep(2.0)


def _post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """HTTP status and body of a POST (an error status is an answer too)."""
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    sent = {"Content-Type": "application/octet-stream", **headers}  # bytes, as they are
    request = urllib.request.Request(url, data=data, headers=sent, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def check_triton(
    podman: Podman, image: str, photo: bytes, timeout_s: float = 300.0
) -> ModelServerCheck:
    """The Triton image (CPU) as docker-compose.triton.yml runs it (read-only, /tmp and /models
    on tmpfs, shared memory for the Python backend, the inference key written to a mounted
    folder): its own health check passes, an inference without the key is refused, one with
    it answered."""
    from geoverdict_common.inference_key import read_inference_key  # noqa: PLC0415
    from geoverdict_service.model_servers.open_inference import infer_request  # noqa: PLC0415
    from geoverdict_stack.ports import free_ports  # noqa: PLC0415

    uid = user_of(podman, image)
    (port,) = free_ports(1)
    name = f"geoverdict-triton-check-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="geoverdict-keys-") as keys:
        Path(keys).chmod(0o777)  # the image's user writes the inference key here
        args = ["run", "-d", "--name", name, *HARDENING, "--tmpfs=/models", "--shm-size=512m"]
        args += ["-v", f"{keys}:/opt/geoverdict/inference-key", "-p", f"127.0.0.1:{port}:8000"]
        podman.run(*args, image)
        try:
            started = time.monotonic()
            ready = (
                "import urllib.request; urllib.request.urlopen("
                "'http://127.0.0.1:8000/v2/models/geoverdict/ready', timeout=4)"
            )
            health = ["exec", name, "python3", "-c", ready]  # the image's HEALTHCHECK
            _wait_for(lambda: podman.succeeds(*health), timeout_s, f"{image} never became ready")
            healthy_after = round(time.monotonic() - started, 1)
            url = f"http://127.0.0.1:{port}/v2/models/geoverdict/infer"
            body, headers = infer_request([photo])
            without, _ = _post(url, body, headers)
            key = read_inference_key(Path(keys) / "key_file.json")
            with_key, _ = _post(url, body, {**headers, "authorization": f"Bearer {key}"})
            version = _triton_version(port)
        except BaseException:
            log.error("triton log:\n%s", _logs(podman, name))
            raise
        finally:
            podman.run("rm", "-f", name)
    return ModelServerCheck(image, uid, healthy_after, without, with_key, version)


def _triton_version(port: int) -> str:
    """The served model's versions, as Triton's open metadata names them."""
    import urllib.request  # noqa: PLC0415

    url = f"http://127.0.0.1:{port}/v2/models/geoverdict"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return ",".join(json.loads(response.read()).get("versions", []))
    except OSError:
        return ""
