"""Every srbench hook, declared and documented in one place.

A plugin is a module (or object) named by an entry point in the ``srbench`` group. It implements any of the
hooks below with ``@srbench.hookimpl``. Each ``register_*`` hook receives a ``register`` callback; call it
once per thing the plugin provides, with the object or, to keep ``srbench`` fast to start, with
``srbench.lazy("package.module:Attribute", **card)``: the object is then imported the first time a command
uses it (the card stands for it in listings). Names must be unique across all installed plugins: a plugin
that registers a name another plugin holds is reported, naming both, and skipped with all it registers.

Example, a complete method plugin::

    import srbench

    @srbench.hookimpl
    def register_methods(register):
        register(MyMethod)          # a subclass of srbench.Method with a unique ``name``
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("srbench")
hookimpl = pluggy.HookimplMarker("srbench")


@hookspec
def register_methods(register):
    """Register super-resolution methods.

    Call ``register(cls)`` with a subclass of :class:`srbench.method.Method`. The class attribute ``name`` is
    the name users type (``srbench run --method NAME``). The class is instantiated by the runner with
    ``cls(preset=..., device=..., seed=...)``.
    """


@hookspec
def register_datasets(register):
    """Register datasets.

    Call ``register(cls)`` with a subclass of :class:`srbench.dataset.Dataset`; ``name`` is the name users
    type (``--dataset NAME``). The runner instantiates it with ``cls(root=...)`` where ``root`` is the
    ``--data-root`` option or ``None``.
    """


@hookspec
def register_degradations(register):
    """Register degradations (HR volume -> LR volume on its own grid).

    Call ``register(name, factory)`` where ``factory(**params)`` returns a
    :class:`srbench.degradation.Degradation`. Named protocols are factories with preset parameters.
    """


@hookspec
def register_metrics(register):
    """Register image-quality metrics.

    Call ``register(metric)`` with an instance of :class:`srbench.metric.Metric`; ``metric.name`` is the
    column name in scores and leaderboards.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``srbench`` command-line interface.

    ``cli`` is the top-level :class:`click.Group`; decorate new commands with ``@cli.command()`` and import what
    they need inside them. A command name that is already taken (by srbench or another plugin) is an error
    naming both, and all of this plugin's commands are left out.
    """
