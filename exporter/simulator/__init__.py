"""A simulated Huawei Cloud VOD editing-task API (and IAM token endpoint) for the demo, the tests
and the benchmarks: same paths, signatures, error bodies and limits as the real one."""
