"""Entry points that host workflows and activities: `orch worker` and `orch hft`."""
