#!/bin/sh
# The Triton image's entry point: geoverdict's Triton entrypoint (the model repository written
# from the model store, the inference secret settled, then tritonserver) with the arguments
# given, and --gpu (GPU instance groups and batching) when SERVING is gpu: the image's build
# argument, or the container's environment (the Helm chart sets it on GPU nodes).
set -eu
case "${SERVING:-cpu}" in
  cpu) ;;
  gpu) set -- --gpu "$@" ;;
  *) echo "SERVING must be cpu or gpu, got '${SERVING}'" >&2; exit 2 ;;
esac
exec python3 -m geoverdict_modelserver.triton_entrypoint "$@"
