"""Benchmarks (``python -m tinycurv bench …``): ratios measured in one run, never timed tests.

A declared host-side package: its modules read the clock, synchronise the device, make their
data with NumPy on the host and print tables.
"""
