"""podman as machines like this one run it: the runc runtime and no default ulimits (crun, and
any --ulimit, fail on setrlimit where the kernel refuses it); both are podman's own settings,
so nothing here is special to the images."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from geoverdict_images.exceptions import ImagesError

log = logging.getLogger(__name__)

CONTAINERS_CONF = "[containers]\ndefault_ulimits = []\n"


class Podman:
    """`podman ...` with this project's runtime settings; output to the log, errors in words."""

    def __init__(self, runtime: str | None = None) -> None:
        path = shutil.which("podman")
        if path is None:
            raise ImagesError("podman is not installed (apt-get install -y podman)")
        self.path = path
        self.runtime = runtime or ("runc" if shutil.which("runc") else None)
        conf = Path(tempfile.gettempdir()) / "geoverdict-containers.conf"
        # The runtime in the file too: podman-compose calls plain `podman` with this file.
        engine = f'\n[engine]\nruntime = "{self.runtime}"\n' if self.runtime else ""
        conf.write_text(CONTAINERS_CONF + engine)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def command(self, *args: str) -> list[str]:
        """The full command line of `podman args`."""
        runtime = ["--runtime", self.runtime] if self.runtime else []
        return [self.path, *runtime, *args]

    def run(self, *args: str, capture: bool = False) -> subprocess.CompletedProcess[bytes]:
        """Run podman; ImagesError with its last output lines when it fails."""
        command = self.command(*args)
        log.debug("%s", " ".join(command))
        done = subprocess.run(command, env=self.env, capture_output=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()[-8:]
            raise ImagesError(f"podman {args[0]} failed ({done.returncode}): " + " | ".join(tail))
        if not capture:
            for line in done.stdout.decode(errors="replace").splitlines()[-3:]:
                log.debug("podman: %s", line)
        return done

    def succeeds(self, *args: str) -> bool:
        """Whether `podman args` exits 0 (a question, not a step: its failure is an answer)."""
        command = self.command(*args)
        return (
            subprocess.run(command, env=self.env, capture_output=True, check=False).returncode == 0
        )

    def exists(self, image: str) -> bool:
        """Whether `image` is in local storage."""
        return self.succeeds("image", "exists", image)

    def import_tree(self, folder: Path, image: str) -> None:
        """A root file system folder as the image `image`, streamed through tar (a few hundred
        MB: never held in memory)."""
        tar = subprocess.Popen(["tar", "-C", str(folder), "-c", "."], stdout=subprocess.PIPE)
        done = subprocess.run(
            self.command("import", "-", image),
            env=self.env,
            stdin=tar.stdout,
            capture_output=True,
            check=False,
        )
        if tar.stdout is not None:
            tar.stdout.close()
        if tar.wait() != 0 or done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise ImagesError(f"importing {folder} as {image} failed: " + " | ".join(tail))

    def build(
        self, tag: str, containerfile: Path, context: Path, build_args: Sequence[str] = ()
    ) -> None:
        """Build `containerfile` with `context` into `tag`."""
        args = [f"--build-arg={a}" for a in build_args]
        self.run("build", "--layers", "-t", tag, "-f", str(containerfile), *args, str(context))

    def size_mb(self, image: str) -> float:
        """The image's size in MB."""
        out = self.run("image", "inspect", "--format", "{{.Size}}", image, capture=True)
        return round(int(out.stdout.decode().strip()) / 1e6, 1)
