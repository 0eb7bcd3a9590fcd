"""Shared fixtures: the public corpus (skipped when absent) and an in-memory analysis run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
PCAPS = REPO / "pcaps"


class ListSink:
    """Collects EVE records in memory, JSON round-tripped as a file consumer would see them."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def handle(self, record: dict[str, Any]) -> None:
        from otids.alerts.sinks import _json_default

        self.records.append(json.loads(json.dumps(record, default=_json_default)))

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event_type"] == event_type]


@pytest.fixture
def corpus() -> Path:
    """The public test corpus next to the repository; the test is skipped without it."""
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is absent")
    return CORPUS


def analyse(
    paths: Iterable[str | Path],
    rules: Iterable[str | Path] | None = None,
    default_rules: bool = True,
    transactions: bool = True,
    variables: dict[str, list[Any]] | None = None,
) -> ListSink:
    """Run the whole pipeline on captures; return the sink holding every record."""
    from otids.capture.readers import open_capture
    from otids.pipeline import Pipeline
    from otids.rules.loader import default_rules_dir, load_rules

    rule_paths: list[str | Path] = [default_rules_dir()] if default_rules else []
    rule_paths.extend(rules or [])
    sink = ListSink()
    pipeline = Pipeline(load_rules(rule_paths, variables), sink, log_transactions=transactions)
    for path in paths:
        with open_capture(path) as reader:
            pipeline.files += 1
            reader.prefilter = pipeline.decoder  # as otids read does
            pipeline.run(reader)
    pipeline.finish()
    return sink


@pytest.fixture
def run_analysis() -> Callable[..., ListSink]:
    """:func:`analyse` as a fixture."""
    return analyse
