"""Benchmarks on real multi-domain data: pools, baselines and the study harness."""
