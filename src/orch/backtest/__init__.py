"""Backtests of discovery strategies on backtrader, walk-forward optimisation, and their reports.

Plain Python (no Temporal): `engine` (backtrader), `metrics`, `data` (sources, periods, splits),
`optimise`, `analysis`, `jobs` (what a backtest process runs), `process` (runs a job in its own
process with progress and cancel), `report` (metrics JSON and the equity-curve PNG).
"""
