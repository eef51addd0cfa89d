"""The exposition, rendered fast, byte for byte as prometheus_client renders it.

prometheus_client validates and escapes every label name of every sample, which costs 11-13 us
per sample in either format; with the default 1,000 per-task series a scrape has over 5,000
samples. The per-task families (``GaugeRows``) have fixed, valid label names, so only their label
values need escaping. ``render_text`` (format 0.0.4) writes every family it can this way and
``render_openmetrics`` (what Prometheus 2.x and 3.x ask for first) writes the per-task families
this way; everything else goes to prometheus_client. ``tests/test_exposition.py`` holds each to
identical bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

_TYPE_NAMES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_OPENMETRICS_ONLY = ("_created", "_gsum", "_gcount")
_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_EOF = "# EOF\n"
_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


class GaugeRows(GaugeMetricFamily):
    """A gauge family given as rows: append ``(label values, value)`` to ``rows``. The renderers
    here write the rows straight out; the ``Sample`` objects prometheus_client reads are made only
    when asked for. The per-task series, most of a scrape, are families of this kind."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.rows: list[tuple[tuple[str, ...], float]] = []
        self._samples: list[Sample] | None = None
        super().__init__(name, documentation, labels=labels)
        self.labelnames = tuple(labels)

    @property
    def samples(self) -> list[Sample]:
        if self._samples is None or len(self._samples) != len(self.rows):
            names = self.labelnames
            self._samples = [
                Sample(self.name, dict(zip(names, v, strict=True)), n, None) for v, n in self.rows
            ]
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        # Metric.__init__ starts every family with an empty list; rows are the one way in.
        if value:
            raise TypeError("append (label values, value) to rows instead")


class _OneFamily(Collector):
    def __init__(self, family: object) -> None:
        self._family = family

    def collect(self) -> Iterable[object]:  # type: ignore[override]
        return [self._family]


def render_text(registry: Collector) -> bytes:
    output: list[str] = []
    escaped: dict[str, str] = {}  # label values repeat across the per-task families
    for family in registry.collect():
        if isinstance(family, GaugeRows) and _LEGACY_NAME.fullmatch(family.name):
            _render_rows(output, family, escaped, _text_help(family.documentation))
        elif _renderable(family.name, family.samples):
            _render_family(output, family.name, family.type, family.documentation, family.samples)
        else:
            output.append(generate_latest(_OneFamily(family)).decode())
    return "".join(output).encode()


def render_openmetrics(registry: Collector, encoder: Callable[[Collector], bytes]) -> bytes:
    """OpenMetrics: the per-task families written here, the rest by ``encoder`` (prometheus_client's
    OpenMetrics writer, with the version and escaping the client negotiated)."""
    output: list[str] = []
    escaped: dict[str, str] = {}
    for family in registry.collect():
        if isinstance(family, GaugeRows) and _LEGACY_NAME.fullmatch(family.name) and not family.unit:
            # OpenMetrics escapes quotes in HELP too; the text format does not.
            help_text = _text_help(family.documentation).replace('"', r"\"")
            _render_rows(output, family, escaped, help_text)
        else:
            text = encoder(_OneFamily(family)).decode()
            output.append(text.removesuffix(_EOF))
    output.append(_EOF)
    return "".join(output).encode()


def _renderable(name: str, samples: list[Sample]) -> bool:
    if not _LEGACY_NAME.fullmatch(name):
        return False
    openmetrics_only = tuple(name + suffix for suffix in _OPENMETRICS_ONLY)
    return all(
        s.timestamp is None
        and s.exemplar is None
        and s.native_histogram is None
        and s.name not in openmetrics_only
        for s in samples
    )


def _render_family(
    output: list[str], name: str, kind: str, documentation: str, samples: list[Sample]
) -> None:
    shown = name + "_total" if kind == "counter" else name + "_info" if kind == "info" else name
    output.append(
        f"# HELP {shown} {_text_help(documentation)}\n# TYPE {shown} {_TYPE_NAMES.get(kind, kind)}\n"
    )
    label_order: dict[tuple[str, ...], tuple[str, ...]] = {}
    for sample in samples:
        labels = sample.labels
        if labels:
            keys = tuple(labels)
            order = label_order.get(keys)
            if order is None:
                order = label_order[keys] = tuple(sorted(keys))
            text = ",".join(f'{key}="{labels[key].translate(_VALUE_ESCAPES)}"' for key in order)
            output.append(f"{sample.name}{{{text}}} {_go_float(sample.value)}\n")
        else:
            output.append(f"{sample.name} {_go_float(sample.value)}\n")


def _text_help(documentation: str) -> str:
    return documentation.replace("\\", r"\\").replace("\n", r"\n")


def _render_rows(output: list[str], family: GaugeRows, escaped: dict[str, str], help_text: str) -> None:
    output.append(f"# HELP {family.name} {help_text}\n# TYPE {family.name} gauge\n")
    names = family.labelnames
    order = sorted(range(len(names)), key=names.__getitem__)
    # One format string per family: name{a="{0}",b="{1}"} {2}\n, labels in sorted order.
    labels = ",".join(f'{names[i]}="{{{i}}}"' for i in order)
    line = family.name + ("{{" + labels + "}}" if names else "") + " {" + str(len(names)) + "}\n"
    append, lookup, escapes, number_text = output.append, escaped.get, _VALUE_ESCAPES, _go_float
    # The loops are spelled out per number of labels: this is the hottest code of a scrape.
    if len(names) == 2:
        for (first, second), number in family.rows:
            one = lookup(first) or escaped.setdefault(first, first.translate(escapes))
            two = lookup(second) or escaped.setdefault(second, second.translate(escapes))
            append(line.format(one, two, number_text(number)))
        return
    for values, number in family.rows:
        fields = [lookup(value) or escaped.setdefault(value, value.translate(escapes)) for value in values]
        append(line.format(*fields, number_text(number)))


def _go_float(value: float) -> str:
    """A float as Go (and so prometheus_client) writes it: +Inf, NaN, 1.5e+09."""
    text = repr(float(value))
    dot = text.find(".")
    if dot > 6 and value > 0:  # Go switches to an exponent sooner than Python
        return f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.") + _EXPONENTS[dot - 1]
    if dot < 0 and text[-1] in "fn":  # inf, -inf, nan
        return "NaN" if text == "nan" else ("+Inf" if text == "inf" else "-Inf")
    return text


_EXPONENTS = [f"e+{power:02d}" for power in range(400)]
