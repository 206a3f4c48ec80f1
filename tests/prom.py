"""Prometheus text as the tests read it: a series is looked up by name and labels, and a
series that is not there is an error, never a 0.

A check that a counter did not move must compare two values that exist: with a default of 0
a renamed metric or label (or a process that stopped counting) reads 0 before and after, and
"nothing reached the service" would pass whatever happened.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """The samples of one /metrics page: (sample name, labels, value)."""

    samples: tuple[tuple[str, dict[str, str], float], ...]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls(
            tuple(
                (s.name, dict(s.labels), s.value)
                for family in text_string_to_metric_families(text)
                for s in family.samples
            )
        )

    @classmethod
    def fetch(cls, port: int) -> Scrape:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return cls.parse(r.read().decode())

    def has(self, name: str, **labels: str) -> bool:
        """A series called `name` with `labels` exists (whatever its value, 0 included)."""
        return next(self._matching(name, labels), None) is not None

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` (e.g. `…_total`) whose labels include
        `labels`; AssertionError when there is none."""
        found = list(self._matching(name, labels))
        if not found:
            raise AssertionError(f"no series {name}{labels} in the scrape")
        return sum(found)

    def rise(self, before: Scrape, name: str, **labels: str) -> float:
        """How much a counter rose since `before`. The series must exist now; one missing
        before had not been incremented yet (a labelled counter is born at its first
        increment), so it rose from 0."""
        now = self.value(name, **labels)
        return now - (before.value(name, **labels) if before.has(name, **labels) else 0.0)

    def _matching(self, name: str, labels: dict[str, str]):
        for sample, have, value in self.samples:
            if sample == name and all(have.get(k) == v for k, v in labels.items()):
                yield value
