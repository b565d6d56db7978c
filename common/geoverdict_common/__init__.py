"""What every half of geoverdict shares, and nothing else: the wire contracts (JSON Schemas and
their TypedDicts), GPS EXIF reading, distances, an archive's serving settings, the model store's
manifest, the inference key file and where things live.

The service (no torch), the training code and its model handler, the model-server package, the
local stack launcher and the CLI all import this package; it imports none of them.
"""
