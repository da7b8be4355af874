"""The typed clients spell each service's message names once: every name `SystemStateClient` sends is
one the `SystemState` workflow defines, with the kind (query or update) it defines it as."""

from __future__ import annotations

import ast
import inspect

from temporalio import workflow

from orch.clients import system_state as client_module
from orch.workflows.system_state import SystemStateWorkflow


def _names_sent(method: str) -> set[str]:
    """The first argument of every `self.handle.<method>("name", ...)` call in the client's source."""
    tree = ast.parse(inspect.getsource(client_module))
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == method
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_every_name_the_client_sends_is_defined_by_the_workflow() -> None:
    definition = workflow._Definition.must_from_class(SystemStateWorkflow)
    assert _names_sent("query") == {"state"} <= set(definition.queries)
    updates = _names_sent("execute_update")
    assert updates - set(definition.updates) == set()
    # Every update the workflow offers has its typed method here, so no caller needs to spell one.
    assert set(definition.updates) - updates == set()
