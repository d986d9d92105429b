"""Plugin discovery and the registries built from the hooks.

Built-in and third-party plugins are found the same way: entry points in the ``srbench`` group.
``SRBENCH_LOAD_PLUGINS=a,b`` loads only the named entry points (empty: none), so a broken plugin can be
switched off. A plugin that fails to import or to register is reported by name and skipped; the others load.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
from dataclasses import dataclass, field

import pluggy

from . import hookspecs
from .errors import SRBenchError

GROUP = "srbench"
log = logging.getLogger("srbench.plugins")


@dataclass
class PluginFailure:
    name: str
    distribution: str
    version: str
    stage: str  # "import" or the hook name
    error: str

    def line(self) -> str:
        return f"plugin {self.name!r} ({self.distribution} {self.version}) failed at {self.stage}: {self.error}"


@dataclass
class Registry:
    """Everything the installed plugins registered, with who registered what."""

    methods: dict = field(default_factory=dict)
    datasets: dict = field(default_factory=dict)
    degradations: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    owners: dict = field(default_factory=dict)  # (kind, name) -> plugin name
    failures: list = field(default_factory=list)


_pm: pluggy.PluginManager | None = None
_failures: list[PluginFailure] = []
_registry: Registry | None = None


def _allowed() -> set[str] | None:
    value = os.environ.get("SRBENCH_LOAD_PLUGINS")
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def _dist_of(ep) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    return (dist.name, dist.version) if dist is not None else ("?", "?")


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading entry points on first use."""
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("SRBENCH_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()
    allowed = _allowed()
    eps = importlib.metadata.entry_points(group=GROUP)
    for name in sorted((allowed or set()) - {ep.name for ep in eps}):  # a typo must not pass for "loaded"
        _failures.append(PluginFailure(name, "?", "?", "import", "named in SRBENCH_LOAD_PLUGINS but not installed"))
    for ep in eps:
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None:
            # Two distributions use one entry-point name: only the first loads; say so instead of hiding it.
            dist, version = _dist_of(ep)
            taken_by = _plugin_dist(pm, ep.name)[0]
            _failures.append(PluginFailure(ep.name, dist, version, "import",
                                           f"entry-point name {ep.name!r} is already taken by {taken_by}; skipped"))
            continue
        try:
            # pluggy's own loader, one entry point at a time, so one failure does not stop the rest.
            pm.load_setuptools_entrypoints(GROUP, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - any import error of a third-party plugin
            dist, version = _dist_of(ep)
            _failures.append(PluginFailure(ep.name, dist, version, "import", f"{type(exc).__name__}: {exc}"))
    _pm = pm
    return pm


def reset() -> None:
    """Forget loaded plugins (tests, or after installing a plugin in-process)."""
    global _pm, _registry
    _pm = None
    _registry = None
    _failures.clear()


def register_plugin(plugin, name: str) -> None:
    """Register an in-process plugin object (tests, notebooks) and rebuild the registries."""
    global _registry
    get_plugin_manager().register(plugin, name=name)
    _registry = None


def _plugin_dist(pm: pluggy.PluginManager, plugin_name: str) -> tuple[str, str]:
    for plugin, dist in pm.list_plugin_distinfo():
        if pm.get_name(plugin) == plugin_name:
            return dist.project_name, dist.version
    return "(in-process)", "?"


def _collect(pm, hook_name: str, kind: str, registry: Registry, key) -> dict:
    items: dict = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        owner = impl.plugin_name

        def register(*args, _owner=owner):
            name, obj = key(*args)
            if name in items:
                first = registry.owners[(kind, name)]
                raise SRBenchError(f"{kind[:-1]} name {name!r} is registered twice: by plugin {first!r} and by plugin {_owner!r}")
            items[name] = obj
            registry.owners[(kind, name)] = _owner

        try:
            impl.function(register)
        except SRBenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's registration must not take the others down
            dist, version = _plugin_dist(pm, owner)
            registry.failures.append(PluginFailure(owner, dist, version, hook_name, f"{type(exc).__name__}: {exc}"))
    return items


def _named(obj):
    return obj.name, obj


def _degradation(name, factory):
    return name, factory


def get_registry() -> Registry:
    """Methods, datasets, degradations and metrics of all loaded plugins (built once per process)."""
    global _registry
    if _registry is not None:
        return _registry
    pm = get_plugin_manager()
    reg = Registry()
    reg.methods = _collect(pm, "register_methods", "methods", reg, _named)
    reg.datasets = _collect(pm, "register_datasets", "datasets", reg, _named)
    reg.degradations = _collect(pm, "register_degradations", "degradations", reg, _degradation)
    reg.metrics = _collect(pm, "register_metrics", "metrics", reg, _named)
    reg.failures = list(_failures) + reg.failures
    _registry = reg
    return reg


def lookup(kind: str, name: str):
    """The registered object of ``kind`` ("methods", ...) called ``name``, or a one-line error listing names."""
    items = getattr(get_registry(), kind)
    if name not in items:
        available = ", ".join(sorted(items)) or "none installed"
        raise SRBenchError(f"unknown {kind[:-1]} {name!r}; available: {available}")
    return items[name]


def describe_plugins() -> list[dict]:
    """One dict per loaded plugin: name, distribution, version, hooks, and the names it registered."""
    pm = get_plugin_manager()
    reg = get_registry()
    rows = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        dist, version = _plugin_dist(pm, name)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        provides = {kind: sorted(n for (k, n), owner in reg.owners.items() if owner == name and k == kind)
                    for kind in ("methods", "datasets", "degradations", "metrics")}
        rows.append({"name": name, "distribution": dist, "version": version, "hooks": hooks,
                     "registers": {k: v for k, v in provides.items() if v}})
    return sorted(rows, key=lambda r: r["name"])
