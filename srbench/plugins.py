"""Plugin discovery and the registries built from the hooks.

Built-in and third-party plugins are found the same way: entry points in the ``srbench`` group.
``SRBENCH_LOAD_PLUGINS=a,b`` loads only the named entry points (empty: none), so a broken plugin can be
switched off. A plugin that fails to import or to register is reported by name and skipped; the others load.
``SRBENCH_TRACE_PLUGINS=1`` writes every entry-point load and every hook call (plugin, distribution, version,
what it registered, how long it took) to stderr.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from dataclasses import dataclass, field

import pluggy

from . import hookspecs
from .errors import SRBenchError, did_you_mean
from .registration import Entries

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

    methods: Entries = field(default_factory=lambda: Entries("methods", _lazy_error))
    datasets: Entries = field(default_factory=lambda: Entries("datasets", _lazy_error))
    degradations: Entries = field(default_factory=lambda: Entries("degradations", _lazy_error))
    metrics: Entries = field(default_factory=lambda: Entries("metrics", _lazy_error))
    owners: dict = field(default_factory=dict)  # (kind, name) -> plugin name
    failures: list = field(default_factory=list)


_pm: pluggy.PluginManager | None = None
_failures: list[PluginFailure] = []
_loaded_order: list[str] = []  # plugin names in the order they were loaded
_registry: Registry | None = None


def _allowed() -> set[str] | None:
    value = os.environ.get("SRBENCH_LOAD_PLUGINS")
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def tracing() -> bool:
    """Whether ``SRBENCH_TRACE_PLUGINS`` asks for a log of plugin loading and hook calls."""
    return os.environ.get("SRBENCH_TRACE_PLUGINS", "").strip().lower() not in ("", "0", "false", "no")


def trace(message: str) -> None:
    if tracing():
        print(f"srbench-trace: {message}", file=sys.stderr, flush=True)


def _trace_hookimpls(pm: pluggy.PluginManager) -> None:
    """Wrap every hook implementation so that each call is logged, whoever calls it (registries, the CLI)."""
    if not tracing():
        return
    for hook_name, caller in vars(pm.hook).items():
        if not isinstance(caller, pluggy.HookCaller):
            continue
        for impl in caller.get_hookimpls():
            if getattr(impl.function, "_srbench_traced", False):
                continue
            impl.function = _traced_call(pm, hook_name, impl.plugin_name, impl.function)


def _traced_call(pm, hook_name: str, plugin_name: str, function):
    def call(*args, **kwargs):
        dist, version = _plugin_dist(pm, plugin_name)
        trace(f"call {hook_name} of plugin {plugin_name!r} ({dist} {version})")
        t0 = time.perf_counter()
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:
            trace(f"  {hook_name} of plugin {plugin_name!r} raised {type(exc).__name__}: {exc} "
                  f"({1000 * (time.perf_counter() - t0):.1f} ms)")
            raise
        trace(f"  {hook_name} of plugin {plugin_name!r} done ({1000 * (time.perf_counter() - t0):.1f} ms)")
        return result

    call._srbench_traced = True
    return call


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
        t0 = time.perf_counter()
        try:
            # pluggy's own loader, one entry point at a time, so one failure does not stop the rest.
            pm.load_setuptools_entrypoints(GROUP, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - any import error of a third-party plugin
            dist, version = _dist_of(ep)
            _failures.append(PluginFailure(ep.name, dist, version, "import", f"{type(exc).__name__}: {exc}"))
            trace(f"load entry point {ep.name!r} = {ep.value} ({dist} {version}) FAILED: {type(exc).__name__}: {exc}")
        else:
            _loaded_order.append(ep.name)
            dist, version = _dist_of(ep)
            if not pm.get_hookcallers(pm.get_plugin(ep.name)):
                # e.g. an editable install whose metadata predates a move of the plugin's entry point
                _failures.append(PluginFailure(ep.name, dist, version, "import",
                                               f"{ep.value} implements no srbench hook; if the distribution was "
                                               "updated in place, reinstall it (python -m pip install -e ...)"))
            trace(f"load entry point {ep.name!r} = {ep.value} ({dist} {version}) "
                  f"in {1000 * (time.perf_counter() - t0):.1f} ms")
    _trace_hookimpls(pm)
    _pm = pm
    return pm


def reset() -> None:
    """Forget loaded plugins (tests, or after installing a plugin in-process)."""
    global _pm, _registry
    _pm = None
    _registry = None
    _failures.clear()
    _loaded_order.clear()


def register_plugin(plugin, name: str) -> None:
    """Register an in-process plugin object (tests, notebooks) and rebuild the registries."""
    global _registry
    pm = get_plugin_manager()
    pm.register(plugin, name=name)
    _loaded_order.append(name)
    _trace_hookimpls(pm)
    _registry = None


def _plugin_dist(pm: pluggy.PluginManager, plugin_name: str) -> tuple[str, str]:
    for plugin, dist in pm.list_plugin_distinfo():
        if pm.get_name(plugin) == plugin_name:
            return dist.project_name, dist.version
    return "(in-process)", "?"


KINDS = {"methods": "register_methods", "datasets": "register_datasets", "degradations": "register_degradations",
         "metrics": "register_metrics"}


def _registrations(pm, plugin_name: str, failures: list) -> list[tuple[str, str, object]]:
    """(kind, name, object) for everything one plugin registers; a hook that raises is a failure of that hook."""
    plugin = pm.get_plugin(plugin_name)
    found = []
    for kind, hook_name in KINDS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin is not plugin:
                continue

            def register(*args, _kind=kind):
                name, obj = args if _kind == "degradations" else (args[0].name, args[0])
                found.append((_kind, name, obj))
                trace(f"  plugin {plugin_name!r} registered {_kind[:-1]} {name!r}")

            try:
                impl.function(register)
            except Exception as exc:  # noqa: BLE001 - a plugin's registration must not take the others down
                failures.append(PluginFailure(plugin_name, *_plugin_dist(pm, plugin_name), hook_name,
                                              f"{type(exc).__name__}: {exc}"))
    return found


def _precedence(pm) -> list[str]:
    """Plugin names in the order their names are claimed: srbench's own plugins first, then in loading order."""
    names = [pm.get_name(p) for p in pm.get_plugins()]
    order = {name: i for i, name in enumerate(_loaded_order)}
    names.sort(key=lambda n: (_plugin_dist(pm, n)[0] != "srbench", order.get(n, len(order)), n))
    return names


def _clash(reg: Registry, found, plugin_name: str) -> str | None:
    """Why ``plugin_name`` cannot register ``found``: a name already taken (by whom), or one it registers twice."""
    seen = set()
    for kind, name, _ in found:
        if (kind, name) in reg.owners:
            return f"{kind[:-1]} name {name!r} is already registered by plugin {reg.owners[(kind, name)]!r}"
        if (kind, name) in seen:
            return f"it registers {kind[:-1]} name {name!r} twice"
        seen.add((kind, name))
    return None


def _lazy_error(kind: str, name: str, exc: BaseException) -> SRBenchError:
    if isinstance(exc, SRBenchError):
        plugin, dist, version = origin(kind, name)
        return SRBenchError(f"{kind[:-1]} {name!r} (plugin {plugin!r}, {dist} {version}): {exc}")
    return plugin_error(kind, name, "import", exc)


def get_registry() -> Registry:
    """Methods, datasets, degradations and metrics of all loaded plugins (built once per process).

    A plugin that registers a name another plugin already holds (srbench's own plugins hold theirs first) is
    reported, naming both, and skipped with everything it registers; the other plugins are unaffected.
    """
    global _registry
    if _registry is not None:
        return _registry
    pm = get_plugin_manager()
    reg = Registry()
    failures: list[PluginFailure] = []
    for plugin_name in _precedence(pm):
        found = _registrations(pm, plugin_name, failures)
        clash = _clash(reg, found, plugin_name)
        if clash is not None:
            failures.append(PluginFailure(plugin_name, *_plugin_dist(pm, plugin_name), "registration",
                                          f"{clash}; plugin {plugin_name!r} is skipped with all it registers"))
            continue
        for kind, name, obj in found:
            getattr(reg, kind).add(name, obj)
            reg.owners[(kind, name)] = plugin_name
    reg.failures = list(_failures) + failures
    _registry = reg
    return reg


def lookup(kind: str, name: str):
    """The registered object of ``kind`` ("methods", ...) called ``name``, or a one-line error listing names."""
    items = getattr(get_registry(), kind)
    if name not in items:
        available = ", ".join(sorted(items)) or "none installed"
        raise SRBenchError(f"unknown {kind[:-1]} {name!r}{did_you_mean(name, items)}; available: {available}")
    return items[name]


def origin(kind: str, name: str) -> tuple[str, str, str]:
    """(plugin, distribution, version) of whoever registered ``name`` among ``kind`` ("methods", ...)."""
    plugin = get_registry().owners.get((kind, name))
    if plugin is None:
        return "?", "?", "?"
    return (plugin, *_plugin_dist(get_plugin_manager(), plugin))


# Method calls that run a plugin's own code, and the stage named when one raises.
GUARDED_CALLS = {"fit": "fit", "predict_volume": "predict", "save": "save", "load": "load"}


def plugin_error(kind: str, name: str, stage: str, exc: BaseException, cls=None) -> SRBenchError:
    """A one-line error for an exception raised inside a plugin's code, naming the plugin, its distribution and
    version, the stage, the exception and where in the plugin it was raised."""
    plugin, dist, version = origin(kind, name)
    text = " ".join(str(exc).split())  # one line, however many the exception has
    text = f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}" if text else type(exc).__name__
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        own = [f for f in frames if _in_code_of(cls, f.filename)] if cls is not None else []
        frame = (own or frames)[-1]
        where = f" [at {_shown_path(cls, frame.filename) if own else Path(frame.filename).name}:{frame.lineno}]"
    plugin_part = f"plugin {plugin!r}, " if plugin != name else ""
    return SRBenchError(f"{kind[:-1]} {name!r} ({plugin_part}{dist} {version}) failed in {stage}: {text}{where}")


def _code_root(cls) -> Path | None:
    """The plugin's code: its top-level package folder, or its single module file."""
    top = sys.modules.get(cls.__module__.split(".")[0])
    try:
        if top is not None and getattr(top, "__path__", None):
            return Path(list(top.__path__)[0]).resolve()
        return Path(inspect.getfile(cls)).resolve()
    except (TypeError, OSError, IndexError):
        return None


def _in_code_of(cls, filename: str) -> bool:
    root = _code_root(cls)
    if root is None:
        return False
    path = Path(filename).resolve()
    return path == root or (root.is_dir() and path.is_relative_to(root))


def _shown_path(cls, filename: str) -> str:
    root, path = _code_root(cls), Path(filename).resolve()
    return str(path.relative_to(root.parent)) if root is not None and root.is_dir() else path.name


def _guard(function, name: str, stage: str, cls):
    def guarded(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except SRBenchError:
            raise  # already a one-line message meant for users
        except Exception as exc:  # noqa: BLE001 - whatever a plugin raises becomes a one-line report
            raise plugin_error("methods", name, stage, exc, cls) from exc

    guarded.__wrapped__ = function
    return guarded


def instantiate_method(cls, **kwargs):
    """``cls(**kwargs)`` with its plugin's code guarded: an exception raised while constructing it, or inside its
    ``fit``, ``predict_volume`` (and the ``predict_slices`` it calls), ``save`` or ``load``, becomes one
    :class:`SRBenchError` line naming the method, its plugin, distribution and version, and the stage."""
    name = getattr(cls, "name", "") or cls.__name__
    try:
        method = cls(**kwargs)
    except SRBenchError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise plugin_error("methods", name, "init", exc, cls) from exc
    for attr, stage in GUARDED_CALLS.items():
        setattr(method, attr, _guard(getattr(method, attr), name, stage, cls))
    return method


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
