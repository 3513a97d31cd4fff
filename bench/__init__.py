"""Benchmarks that print figures (not tests): the probe and the migrator against baselines."""
