"""TorchServe behind a small entrypoint, the same in the image and on the local stack.

Before TorchServe starts, every archive it is asked to load must match the model store's
manifest (geoverdict_common.archives): a swapped or corrupted .mar never runs. While it runs,
the inference key alone is copied from TorchServe's key_file.json (which also holds the
management and token-rotation keys) to a file the consumer may read, again whenever TorchServe
rotates its keys. Signals are passed on, and the exit status is TorchServe's.

    python -m geoverdict_modelserver.torchserve_entrypoint --model-store DIR --load all \\
        --inference-key /inference-key/key_file.json -- torchserve --start --foreground ...

Standard library, geoverdict_common and this package only.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from geoverdict_common.archives import MANIFEST, problems
from geoverdict_common.exceptions import InferenceKeyError
from geoverdict_common.inference_key import (
    KEY_FILE_NAME,
    read_inference_key,
    write_inference_key,
)
from geoverdict_modelserver.model_load import archives_to_load

POLL_S = 0.5


def publish_inference_key(key_file: Path, target: Path, last: str | None) -> str | None:
    """Write the inference key alone to `target` (readable by others, atomically) when it
    changed; returns the key now published."""
    try:
        key = read_inference_key(key_file)
    except InferenceKeyError:
        return last  # not written yet, or being rewritten
    if key == last:
        return last
    write_inference_key(target, key)
    return key


def main(argv: Sequence[str] | None = None) -> int:
    """Check the archives, run TorchServe, publish its inference key; TorchServe's status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-store", type=Path, required=True)
    parser.add_argument("--load", default="", help="TorchServe's load_models value")
    parser.add_argument("--inference-key", type=Path, required=True, metavar="FILE")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- torchserve ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the TorchServe command after --")

    refused = problems(args.model_store, archives_to_load(args.model_store, args.load))
    if refused:
        for problem in refused:
            print(f"refusing to start TorchServe: {problem}", file=sys.stderr)
        print(
            f"record an archive you trust with `geoverdict export`/`calibrate`, or "
            f"`(cd {args.model_store} && sha256sum NAME.mar >> {MANIFEST})`",
            file=sys.stderr,
        )
        return 3

    child = subprocess.Popen(command)

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    published: str | None = None
    while child.poll() is None:
        # TorchServe writes its key file (all keys) into its working directory.
        published = publish_inference_key(Path(KEY_FILE_NAME), args.inference_key, published)
        time.sleep(POLL_S)
    return int(child.returncode or 0)


if __name__ == "__main__":
    sys.exit(main())
