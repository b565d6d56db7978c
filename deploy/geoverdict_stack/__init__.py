"""The local stack: real Apache Kafka (KRaft), Redis and TorchServe started as plain processes.

Used by `geoverdict stack`, the demo, the benchmarks and the integration-test fixtures, on
machines without a Docker engine. In production, docker-compose.yml runs the same servers. The
stack is the launcher only: it starts TorchServe and Triton through the entrypoints and
configuration of geoverdict_modelserver, as the images do.
"""
