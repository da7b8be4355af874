"""The store of trading-cycle reports: one JSON file per cycle under `$ORCH_HOME/cycle-reports/<account>`.

`log_and_report` writes each report here, `orch cycle report N` reads it, and an engine started afresh
numbers its cycles on from the newest one. File I/O lives here, not in the contracts that describe
the report.
"""

from __future__ import annotations

from pathlib import Path


def cycle_reports_dir(home: Path, account: str) -> Path:
    return home / "cycle-reports" / account


def cycle_report_path(home: Path, account: str, cycle_number: int) -> Path:
    return cycle_reports_dir(home, account) / f"cycle-{cycle_number:06d}.json"


def report_paths(home: Path, account: str) -> list[Path]:
    """Every report on disk for the account, oldest cycle first."""
    return sorted(cycle_reports_dir(home, account).glob("cycle-*.json"))


def next_cycle_number(home: Path, account: str) -> int:
    """One past the newest report on disk: a restarted engine does not reuse the numbers of the last."""
    numbers = [
        int(path.stem.removeprefix("cycle-"))
        for path in report_paths(home, account)
        if path.stem.removeprefix("cycle-").isdigit()
    ]
    return max(numbers, default=0) + 1
