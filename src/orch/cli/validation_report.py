"""A validation's report folder: `metrics.json` (the whole result) and `equity.png`.

The chart is drawn with matplotlib's Agg backend, selected before pyplot is imported: backtrader's
own `cerebro.plot()` would pick an interactive (Tk) backend, which fails on a server without a
display and pops windows on a desktop.
"""

from __future__ import annotations

import json
from pathlib import Path

from orch.contracts.validation import ValidateAlgorithmsResult

METRICS_FILE = "metrics.json"
EQUITY_FILE = "equity.png"


def write_report(result: ValidateAlgorithmsResult, folder: Path) -> list[Path]:
    """Write the report into `folder` (created if needed); returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = folder / METRICS_FILE
    metrics.write_text(json.dumps(result.model_dump(mode="json"), indent=2))
    written = [metrics]
    if result.backtests:
        written.append(plot_equity(result, folder / EQUITY_FILE))
    return written


def plot_equity(result: ValidateAlgorithmsResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: no display needed, never Tk
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 5.5), dpi=100)
    try:
        for backtest in result.backtests:
            axes.plot(
                backtest.curve.timestamps, backtest.curve.strategy, label=backtest.strategy, linewidth=1.4
            )
        first = result.backtests[0]
        axes.plot(
            first.curve.timestamps,
            first.curve.buy_and_hold,
            label="buy-and-hold (equal weight)",
            color="grey",
            linestyle="--",
            linewidth=1.2,
        )
        period = result.period.value if result.period else ""
        source, symbols = (result.data.source, len(result.data.symbols)) if result.data else ("", 0)
        axes.set_title(f"Equity, growth of 1 ({period}, {source}, {symbols} symbols)")
        axes.set_ylabel("growth of 1")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="best")
        figure.autofmt_xdate()
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)
    return path
