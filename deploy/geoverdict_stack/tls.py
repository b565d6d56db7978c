"""A certificate authority and a server certificate for Kafka's TLS listener, made with openssl.

The local stack makes a fresh pair per run (valid two days); `geoverdict stack certs --out DIR`
makes the files docker-compose.secure.yml mounts. Kafka reads PEM directly
(ssl.keystore.type=PEM): the key (PKCS#8, unencrypted, readable by its owner only) and the
certificate chain in one file; clients trust ca.pem.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from geoverdict_stack.exceptions import PrerequisiteError

DAYS = 2


@dataclass(frozen=True)
class ServerCertificate:
    """Where the files are."""

    ca: Path  # the CA certificate clients trust
    keystore: Path  # the server's private key and certificate chain, PEM
    ca_key: Path


def make_certificates(folder: Path, hosts: tuple[str, ...], days: int = DAYS) -> ServerCertificate:
    """A CA and a certificate for `hosts` (DNS names or IP addresses) in `folder`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise PrerequisiteError("openssl is not installed (apt-get install -y openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    alt_names = ",".join(
        f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts
    )
    extensions = folder / "server.ext"
    extensions.write_text(f"subjectAltName={alt_names}\nextendedKeyUsage=serverAuth\n")
    steps = [
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
            "-days",
            str(days),
            "-subj",
            "/CN=geoverdict local CA",
        ],
        [
            openssl,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            f"/CN={hosts[0]}",
        ],
        [
            openssl,
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-out",
            str(cert),
            "-days",
            str(days),
            "-extfile",
            str(extensions),
        ],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, check=False, timeout=60)
        if result.returncode != 0:
            raise PrerequisiteError(f"openssl failed: {result.stderr.strip()[-300:]}")
    keystore = folder / "server-keystore.pem"
    keystore.write_text(key.read_text() + cert.read_text())
    for secret in (keystore, key, ca_key):
        secret.chmod(0o600)
    csr.unlink()
    return ServerCertificate(ca, keystore, ca_key)
