"""vod-exporter's monitoring mixin: the Prometheus rules and the Grafana dashboards, generated from
one small configuration (config.yml) by `python -m mixin`."""
