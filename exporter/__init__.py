"""Prometheus exporter for Huawei Cloud VOD editing tasks."""

__version__ = "0.1.0"
