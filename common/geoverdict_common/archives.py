"""The model store's manifest: the SHA-256 of every archive TorchServe may load.

`geoverdict export` and `geoverdict calibrate` record each archive they write in
`<store>/SHA256SUMS` (the `sha256sum` format, so `sha256sum -c SHA256SUMS` checks it too);
TorchServe's entrypoint (the image and the local stack) refuses to start when an archive it is
asked to load is missing from the manifest or differs from it: a swapped or corrupted .mar
never runs as the handler's code.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

MANIFEST = "SHA256SUMS"


def sha256_of(path: Path) -> str:
    """The file's SHA-256, read in chunks (archives are tens of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(store: Path) -> dict[str, str]:
    """Archive file name -> SHA-256, as recorded (empty when there is no manifest)."""
    path = store / MANIFEST
    if not path.is_file():
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, _, name = line.partition("  ")
            entries[name.strip().lstrip("*")] = digest.strip()
    return entries


def record(archive: Path) -> str:
    """Add or update one archive in its store's manifest; returns its SHA-256."""
    store = archive.parent
    entries = read_manifest(store)
    entries[archive.name] = sha256_of(archive)
    text = "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items()))
    tmp = store / f".{MANIFEST}.tmp"
    tmp.write_text(text)
    os.replace(tmp, store / MANIFEST)
    return entries[archive.name]


def problems(store: Path, names: Iterable[str]) -> list[str]:
    """Why archives `names` of `store` must not be loaded (empty when all match)."""
    entries = read_manifest(store)
    found = []
    for name in names:
        path = store / name
        if not path.is_file():
            found.append(f"{name}: not in the model store")
        elif name not in entries:
            found.append(f"{name}: not listed in {MANIFEST}")
        elif sha256_of(path) != entries[name]:
            found.append(f"{name}: SHA-256 differs from {MANIFEST} (changed or corrupted)")
    return found
