"""The rule-writing guide is generated from the code's tables and committed up to date."""

from __future__ import annotations

from click.testing import CliRunner

from otids.cli import main
from otids.rules.fields import EVENT_NAMES, VOCABULARY
from otids.rules.guide import render_guide
from tests.conftest import REPO

GUIDE = REPO / "docs" / "rules-guide.md"


def test_committed_guide_equals_the_command_output() -> None:
    result = CliRunner().invoke(main, ["rules", "guide"])
    assert result.exit_code == 0
    assert result.output == render_guide()
    assert GUIDE.read_text(encoding="utf-8") == result.output, (
        "docs/rules-guide.md is stale: run `otids rules guide > docs/rules-guide.md`"
    )


def test_guide_lists_every_field_and_event() -> None:
    guide = render_guide()
    for name in (*VOCABULARY, *EVENT_NAMES):
        assert f"| `{name}` |" in guide, name
