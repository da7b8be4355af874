"""The `orch` command."""
