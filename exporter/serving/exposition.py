"""What may reach the exposition: every label value that comes from upstream goes through
``label_value`` first, so that no upstream string can make ``/metrics`` fail.

prometheus_client writes the exposition (its ``make_wsgi_app`` picks the format for the scraper's
``Accept`` header). It escapes what the formats require (backslash,
double quote, newline), then encodes UTF-8, which raises for a string holding a lone surrogate
(JSON ``"a\\ud800"`` decodes to one): a single such value failed every scrape, ``up`` included.
Such records are refused when a page is parsed; this is the second line of defence.

The exposition was once written by hand here, 3-6 times faster, but that code read
prometheus_client internals and broke on versions ``pyproject.toml`` allows. The library renders
the default cap of 1,000 tasks in 30-60 ms, within the 100 ms budget (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib

# Task and asset ids are 32 characters. A longer value is cut, and keeps a digest of the whole,
# so that distinct values stay distinct series and one record cannot make a scrape huge.
MAX_LABEL_VALUE_LENGTH = 256
_DIGEST_BYTES = 8


def label_value(text: str) -> str:
    """``text`` as it can be written: any lone surrogate as its ``\\udxxx`` escape, and cut to
    ``MAX_LABEL_VALUE_LENGTH`` characters if longer. Any other string comes back as it is."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_LABEL_VALUE_LENGTH:
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=_DIGEST_BYTES).hexdigest()
        text = f"{text[: MAX_LABEL_VALUE_LENGTH - 2 * _DIGEST_BYTES - 1]}…{digest}"
    return text
