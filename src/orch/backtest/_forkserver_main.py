"""Imported by the backtest fork server only (its preload list): import the parent's main module
here, once, so that every job process, a fork of this server, finds it already imported.

Every multiprocessing child but a plain fork imports the parent's main module before it runs
anything. CPython's fork server is meant to do that once for all its children when "__main__" is
preloaded, but (3.11 to 3.13) it looks for the main module's path under a key the preparation data
never has, so each child imports it again: seconds per backtest when the main module is a script
that imports the whole worker. `orch.backtest.process` puts the path in the environment before the
server starts; this does what the preload meant to.
"""

from __future__ import annotations

import os
from multiprocessing import process, spawn

MAIN_PATH_VARIABLE = "ORCH_BACKTEST_PARENT_MAIN"  # "<parent pid>:<path>", set by orch.backtest.process

_parent, _, _path = os.environ.get(MAIN_PATH_VARIABLE, "").partition(":")
# Only in the fork server itself, a direct child of the process that set the variable (any other
# process that inherited the variable and imported this would import a stranger's main module).
if _path and _parent == str(os.getppid()):
    # As the fork server's own preload does: a main module that starts processes while being
    # imported here is refused, not run.
    process.current_process()._inheriting = True  # type: ignore[attr-defined]
    try:
        spawn.import_main_path(_path)
    finally:
        del process.current_process()._inheriting  # type: ignore[attr-defined]
