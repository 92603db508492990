"""Benchmarks (``python -m tinycurv bench …``): ratios measured in one run, never timed tests."""
