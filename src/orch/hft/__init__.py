"""The low-latency execution process (`orch hft`): ticks, tiers 1 and 2, one risk gate, a journal, brokers.

It runs outside Temporal; the workflows drive it through its control API with `HftClient`.
"""
