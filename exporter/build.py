"""What this build is: the version, the git revision it was built from, and the Python it runs on.

``--version`` prints it and ``huaweicloud_vod_exporter_build_info`` carries it, with the labels of
Prometheus' own exporters where they apply (``version``, ``revision``; ``python_version`` where
they have ``goversion``). A branch label is left out: a release is built from a tag, and the
branch a commit was on is not something the exporter can know once installed.

The revision comes from, in order:

- ``VOD_EXPORTER_REVISION``: the image sets it from its ``REVISION`` build argument, and any other
  packaging can set it the same way;
- git, when the package runs from a checkout of its own repository (an editable install);
- otherwise ``unknown``: an installed wheel does not know where it came from.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from exporter import __version__

ENV_REVISION = "VOD_EXPORTER_REVISION"
UNKNOWN = "unknown"

# A commit id, a tag or `git describe` output: what a revision label should hold, and nothing that
# would make it hard to read or to match in PromQL.
_REVISION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")
# git answers in milliseconds; a hung one must not hold up --version or the first scrape.
_GIT_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class BuildInfo:
    version: str
    revision: str
    python_version: str


def revision_from(env: Mapping[str, str], package_dir: Path) -> str:
    """The revision named by ``env``, else the git HEAD of the checkout ``package_dir`` is in."""
    named = env.get(ENV_REVISION, "").strip()
    if named:
        return named if _REVISION.fullmatch(named) else UNKNOWN
    return _git_head(package_dir) or UNKNOWN


def _git_head(package_dir: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=_GIT_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    lines = result.stdout.split()
    if result.returncode != 0 or len(lines) != 2:
        return None
    toplevel, head = lines
    # Only the package's own repository: a wheel installed in a virtualenv that lives inside some
    # other checkout would otherwise report that checkout's commit.
    if Path(toplevel).resolve() != package_dir.resolve().parent:
        return None
    return head


@functools.cache
def build_info() -> BuildInfo:
    """This process' build, looked up once."""
    revision = revision_from(os.environ, Path(__file__).resolve().parent)
    return BuildInfo(__version__, revision, platform.python_version())
