"""The local stack: real Apache Kafka (KRaft), Redis and TorchServe started as plain processes.

Used by `geoverdict stack`, the demo, the benchmarks and the integration-test fixtures, on
machines without a Docker engine. In production, docker-compose.yml runs the same servers.
"""
