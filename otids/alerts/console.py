"""The console sink: one readable line per alert, a summary table at the end (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from otids.alerts.eve import EveRecord

# Rows of the per-function table: a function-code scan would otherwise print 127 of them.
SUMMARY_FUNCTIONS = 20

SEVERITY_STYLE: dict[str, str] = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


def _detail(record: EveRecord) -> str:
    """A short protocol description: ``unit 1 diagnostics/force_listen_only_mode``."""
    parts: list[str] = []
    event = record.get("decoder_event")
    app = record.get(record.get("app_proto") or "", None)
    if isinstance(app, dict):
        if "unit_id" in app:
            parts.append(f"unit {app['unit_id']}")
        func = app.get("function") or app.get("function_code")
        if func is not None:
            sub = app.get("subfunction_name")
            parts.append(f"{func}/{sub}" if sub else str(func))
    if event:
        parts.append(event.get("detail") or event.get("name", ""))
    return " ".join(p for p in parts if p)


class ConsoleSink:
    """Prints alerts as they come and, on the final ``stats`` record, the summary tables."""

    def __init__(self, console: Console | None = None, show_alerts: bool = True) -> None:
        self.console = console or Console(highlight=False)
        self.show_alerts = show_alerts

    def handle(self, record: EveRecord) -> None:
        """Print alerts and the final summary; ignore other records."""
        kind = record.get("event_type")
        if kind == "alert" and self.show_alerts:
            self.console.print(self.alert_line(record), soft_wrap=True)
        elif kind == "stats" and record["stats"].get("final"):
            self.summary(record["stats"])

    @staticmethod
    def alert_line(record: EveRecord) -> Text:
        """One line: time, severity, [sid] title, endpoints, protocol detail."""
        alert = record["alert"]
        level = alert.get("level", "medium")
        line = Text()
        line.append(record["timestamp"][:23].replace("T", " "), style="dim")
        line.append("  ")
        line.append(f"{level.upper():<8}", style=SEVERITY_STYLE.get(level, ""))
        line.append(f" [{alert['signature_id']}] ", style="bold")
        line.append(alert["signature"], style="bold")
        src = f"{record['src_ip']}:{record['src_port']}"
        line.append(f"  {src} -> {record['dest_ip']}:{record['dest_port']}")
        detail = _detail(record)
        if detail:
            line.append(f"  {detail}", style="dim")
        return line

    def summary(self, stats: dict[str, Any]) -> None:
        """The end-of-run tables."""
        c = self.console
        cap = stats["capture"]
        overview = Table(title="Summary", show_header=False, title_justify="left")
        overview.add_column(style="bold")
        overview.add_column(justify="right")
        overview.add_row("files", str(cap["files"]))
        overview.add_row("packets", f"{cap['packets']:,}")
        overview.add_row("bytes", f"{cap['bytes']:,}")
        overview.add_row("flows", f"{stats['flows']['total']:,}")
        for proto, app in stats["app_layer"].items():
            overview.add_row(f"{proto} flows", f"{app['flows']:,}")
            overview.add_row(f"{proto} transactions", f"{app['transactions']:,}")
        overview.add_row("decoder events", f"{sum(stats['decoder_events'].values()):,}")
        overview.add_row("alerts", f"{stats['alerts']['total']:,}")
        overview.add_row("seconds", f"{stats['elapsed_s']:.2f}")
        overview.add_row("packets/s", f"{stats['packets_per_s']:,.0f}")
        c.print(overview)
        for proto, app in stats["app_layer"].items():
            if not app["functions"]:
                continue
            table = Table(title=f"{proto} transactions by function", title_justify="left")
            table.add_column("function")
            table.add_column("transactions", justify="right")
            table.add_column("exceptions", justify="right")
            rows = sorted(app["functions"].items(), key=lambda kv: -kv[1]["count"])
            shown, rest = rows[:SUMMARY_FUNCTIONS], rows[SUMMARY_FUNCTIONS:]
            for func, row in sorted(shown, key=lambda kv: _func_sort(kv[0])):
                table.add_row(
                    func, f"{row['count']:,}", f"{row['errors']:,}" if row["errors"] else ""
                )
            if rest:
                count = sum(r["count"] for _, r in rest)
                errors = sum(r["errors"] for _, r in rest)
                table.add_row(
                    f"{len(rest)} other functions (see the JSON stats record)",
                    f"{count:,}",
                    f"{errors:,}" if errors else "",
                    style="dim",
                )
            c.print(table)
        if stats["decoder_events"]:
            table = Table(title="Decoder events", title_justify="left")
            table.add_column("event")
            table.add_column("count", justify="right")
            for name, count in sorted(stats["decoder_events"].items()):
                table.add_row(name, f"{count:,}")
            c.print(table)
        if stats["alerts"]["by_rule"]:
            table = Table(title="Alerts by rule", title_justify="left")
            table.add_column("sid", justify="right")
            table.add_column("severity")
            table.add_column("rule")
            table.add_column("alerts", justify="right")
            for row in stats["alerts"]["by_rule"]:
                table.add_row(
                    str(row["sid"]),
                    Text(row["level"], style=SEVERITY_STYLE.get(row["level"], "")),
                    row["title"],
                    f"{row['count']:,}",
                )
            c.print(table)


def _func_sort(label: str) -> tuple[int, str]:
    head = label.split(" ", 1)[0]
    return (int(head), label) if head.isdigit() else (1 << 30, label)
