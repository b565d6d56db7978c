"""What runs inside the model-server images, and what the local stack starts its model servers
with: the TorchServe and Triton entrypoints, the TorchServe health check, TorchServe's GPU
configuration and Triton's model repository.

Standard library, geoverdict_common and PyYAML only: the images install this package beside
geoverdict_common and geoverdict_training (the model itself, which the servers load from the
archives), never the service or the stack. The Triton image runs it on Python 3.10.
"""
