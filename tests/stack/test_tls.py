"""Kafka's TLS certificate: for the names producers use, signed by a CA clients can trust."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from geoverdict_stack.tls import make_certificates


def test_the_certificate_names_its_hosts_and_chains_to_the_ca(tmp_path: Path) -> None:
    made = make_certificates(tmp_path, ("kafka.example.com", "10.0.0.5"))
    text = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "server.pem"), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:kafka.example.com" in text and "IP Address:10.0.0.5" in text
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(made.ca), str(tmp_path / "server.pem")],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr
    keystore = made.keystore.read_text()
    assert "PRIVATE KEY" in keystore and "CERTIFICATE" in keystore
    for secret in (made.keystore, made.ca_key):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
