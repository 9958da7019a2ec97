"""Benchmark harness: tool-worker against two openai-SDK baselines, each in its own process.

Run it with ``.venv/bin/python -m tests.benchmarks [--quick] [--scenario NAME]``; see
``docs/benchmarks.md`` for what is measured and the latest results.
"""
