"""Benchmarks behind `geoverdict bench` (and `make bench`)."""
