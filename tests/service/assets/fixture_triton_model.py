"""The torch-free fixture model (fixture_handler.py's answers) as a Triton Python-backend model,
for the service tests against Triton."""

import os
import site
import sys

# As the product's entry point (geoverdict_modelserver.triton_repository.BOOTSTRAP): PYTHONPATH
# ahead of what the stub found by itself, which is an activated virtual environment's numpy 2
# when PATH's python3 is that environment's (numpy 2 misreads Triton's BYTES tensors).
_found = list(sys.path)
for entry in filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    site.addsitedir(entry)
sys.path[:] = [p for p in sys.path if p not in _found] + _found
sys.path.insert(0, os.path.dirname(__file__))

import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
from fixture_handler import _predict  # noqa: E402


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.005)  # a little compute, so batches can form
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            if any(bytes(i).startswith(b"CRASH") for i in images):
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError("asked to crash"))
                )
                continue
            replies = [json.dumps(_predict(bytes(i))).encode() for i in images]
            out = np.array(replies, dtype=np.object_).reshape(-1, 1)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("REPLY", out)]))
        return responses
