"""The benchmark harness: API calls, wall time, CPU and memory of a scrape, measured over sockets.

Run ``python -m benchmarks.run --help`` from the repository root; results are kept in
``docs/benchmarks.md``.
"""
