"""The throughput benchmarks behind `make bench` (`python -m benchmarks`): a development package
beside the product, never installed with it. It may import the product; the product never
imports it."""
