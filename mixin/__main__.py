"""`python -m mixin`: regenerate the rules and dashboards from a configuration."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mixin import generate
from mixin.config import DEFAULT_CONFIG, ConfigError, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mixin",
        description="Generate vod-exporter's Prometheus rules and Grafana dashboards from a configuration.",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="default: %(default)s")
    parser.add_argument(
        "--output", type=Path, default=Path(), help="directory the files are written under (default: .)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a file differs from what would be written",
    )
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        stale = generate.stale(config, args.output)
        for path in stale:
            print(f"{path}: differs from what {args.config} generates; run python -m mixin", file=sys.stderr)
        return 1 if stale else 0
    for path in generate.write(config, args.output):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
