"""The verdict service: image events from Kafka in, location and scene verdicts out.

Never imports torch or the training code; it shares only the event, prediction and verdict
contracts (the JSON Schemas in `schemas/`) with the model side.
"""
