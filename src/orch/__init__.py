"""orch: durable orchestration for a multi-agent trading system, on Temporal."""

__version__ = "0.1.0"
