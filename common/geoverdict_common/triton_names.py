"""The names a geoverdict Triton model and the repository it is served from agree on: the
archive's file in a version folder, the input and output tensors (geoverdict_modelserver's
triton_repository writes them, geoverdict_training's triton_model reads them)."""

ARCHIVE = "model.mar"
INPUT = "IMAGE"
OUTPUT = "REPLY"
