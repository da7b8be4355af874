"""Pydantic models and public names shared by every layer.

Nothing here imports anything but pydantic and the standard library, so workflows,
activities, agents and the CLI can all depend on it without dragging each other in.
"""
