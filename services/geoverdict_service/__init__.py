"""The verdict service: image events from Kafka in, location and scene verdicts out.

Never imports torch or the training code; it shares only the event, prediction and verdict
contracts (geoverdict_common.contract, its JSON Schemas in geoverdict_common/schemas/) with
the model side.
"""
