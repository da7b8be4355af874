"""The trading agents: plain Python (numpy), no Temporal, each testable without a server."""
