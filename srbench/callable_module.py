"""``srbench.stats(...)`` and ``srbench.leaderboard(...)``: API functions that share a name with a module.

Importing ``srbench.stats`` (the module) sets the package attribute ``stats`` to the module, so a function of
that name in ``srbench/__init__`` would be replaced as soon as anything imports the module. Instead the module
itself becomes callable, calling the API function (``srbench.api``); its other names work as before.
"""

from __future__ import annotations

import sys
import types


def make_callable(module_name: str, api_name: str) -> None:
    """Make the module ``module_name`` callable as ``srbench.api.<api_name>``."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            from . import api

            return getattr(api, api_name)(*args, **kwargs)

    CallableModule.__call__.__doc__ = f"srbench.api.{api_name}"
    sys.modules[module_name].__class__ = CallableModule
