"""``srbench.stats(...)`` and ``srbench.leaderboard(...)``: API functions that share a name with a module.

Importing ``srbench.stats`` (the module) sets the package attribute ``stats`` to the module, so a function of
that name in ``srbench/__init__`` would be replaced as soon as anything imports the module. Instead the module
itself becomes callable, calling the API function; its other names work as before. The function is named by
import path (``"srbench.api:stats"``, as plugins register by import path) and imported on the first call, so
the module does not import the API that imports it.
"""

from __future__ import annotations

import importlib
import sys
import types


def make_callable(module_name: str, target: str) -> None:
    """Make the module ``module_name`` callable as the function ``target`` (``"package.module:function"``)."""
    module_path, _, function = target.partition(":")

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(importlib.import_module(module_path), function)(*args, **kwargs)

    CallableModule.__call__.__doc__ = f"{target}: see its documentation"
    sys.modules[module_name].__class__ = CallableModule
