"""`geoverdict stack up | status | down` as a user runs it, and failed or interrupted starts."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from geoverdict_stack.exceptions import PortInUseError, StartError
from geoverdict_stack.ports import free_ports
from geoverdict_stack.stack import Stack, StackConfig

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "geoverdict"]


def _processes_under(run_dir: Path) -> list[psutil.Process]:
    """Every live process whose command line or working directory lies in `run_dir`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        text = " ".join(info["cmdline"] or []) + " " + (info["cwd"] or "")
        if str(run_dir) in text:
            found.append(proc)
    return found


def test_cli_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    up = subprocess.run(
        [*CLI, "stack", "up", "--free-ports", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stderr
    pids = Stack.attach(run_dir).pids()
    try:
        status = subprocess.run(
            [*CLI, "stack", "status", "--json", "--run-dir", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        assert set(rows) == {"kafka", "redis", "torchserve"}
        assert all(row["healthy"] for row in rows.values())
        assert len(pids) >= 3
        # `eval "$(geoverdict stack env)"`: what the service's commands need, and no more.
        env = subprocess.run(
            [*CLI, "stack", "env", "--run-dir", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        exported = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in env.splitlines()
        )
        assert set(exported) == {
            "GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS",
            "GEOVERDICT_REDIS_URL",
            "GEOVERDICT_TORCHSERVE_URL",
            "GEOVERDICT_TORCHSERVE_KEY_FILE",
        }
        assert redis.Redis.from_url(exported["GEOVERDICT_REDIS_URL"]).ping()
        keys = json.loads(Path(exported["GEOVERDICT_TORCHSERVE_KEY_FILE"]).read_text())
        assert set(keys) == {"inference"}  # never the management or token-rotation keys
    finally:
        down = subprocess.run(
            [*CLI, "stack", "down", "--run-dir", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in pids if psutil.pid_exists(pid) and _alive(pid)]
    assert not _processes_under(run_dir)
    after = subprocess.run(
        [*CLI, "stack", "status", "--run-dir", str(run_dir)], capture_output=True, text=True
    )
    assert after.returncode == 2
    assert "no stack is running" in after.stderr


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = StackConfig.with_free_ports(run_dir=tmp_path, services=("redis",))
        config = StackConfig(**{**config.__dict__, "redis_port": port})
        with pytest.raises(PortInUseError, match=f"port {port}"):
            Stack(config).up()
    assert not _processes_under(tmp_path)


def test_failed_start_names_the_log_and_stops_what_started(tmp_path: Path) -> None:
    # TorchServe cannot answer within 0.3 s: the Redis that did start must be stopped too.
    config = StackConfig.with_free_ports(
        run_dir=tmp_path, services=("redis", "torchserve"), start_timeout_s=0.3
    )
    stack = Stack(config)
    with pytest.raises(StartError) as excinfo:
        stack.up()
    assert "torchserve" in str(excinfo.value)
    assert str(tmp_path / "torchserve" / "torchserve.log") in str(excinfo.value)
    time.sleep(0.5)
    assert not _processes_under(tmp_path)
    assert not (tmp_path / "stack.json").exists()


def test_ctrl_c_during_up_leaves_nothing_running(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [*CLI, "stack", "up", "--free-ports", "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (run_dir / "kafka" / "kafka.log").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # Kafka's JVM is running, not yet ready
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    time.sleep(0.5)
    assert not _processes_under(run_dir), err


def test_missing_java_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty PATH: no java, no mvn, no redis
    env.pop("JAVA_HOME", None)
    result = subprocess.run(
        [*CLI, "stack", "check"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Java is not installed; "
        "install Java 17+ (apt-get install -y openjdk-17-jre-headless)"
    ]


def test_old_java_names_the_version_needed(tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.21\" 2023-10-17' >&2\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    env.pop("JAVA_HOME", None)
    result = subprocess.run(
        [*CLI, "stack", "check"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert "Java 11 found" in result.stderr and "need Java 17+" in result.stderr
    assert "Traceback" not in result.stderr


def test_free_ports_are_distinct() -> None:
    ports = free_ports(6)
    assert len(set(ports)) == 6
