"""Registration by import path: a plugin names what it provides without importing it.

A plugin module that imports torch when it is loaded makes every ``srbench`` command pay for torch, ``--help``
included, because every command loads every plugin. A plugin registers instead::

    register(srbench.lazy("my_plugin.method:MyMethod", name="mine", version="1.0.0", trains=True,
                          presets=["tiny", "paper"], summary="..."))

Listings (``srbench methods``) read the card given here; the object is imported from its ``"module:attribute"``
path the first time a command uses it, and checked against the card then (a card that disagrees with its class
is a plugin error, not a silently wrong listing). Registering the object itself keeps working.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import SRBenchError

TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


@dataclass(frozen=True)
class Lazy:
    """What to import (``"module:attribute"``), what to call it with (``args``; None: use it as it is) and the card
    that stands for it until then."""

    target: str
    card: dict = field(default_factory=dict)
    args: tuple | None = None

    @property
    def name(self) -> str | None:
        return self.card.get("name")

    def resolve(self):
        module_name, attribute = self.target.split(":")
        obj = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
        if self.args is not None:
            obj = obj(*self.args)
        for key, declared in self.card.items():
            actual = getattr(obj, key, declared)
            if isinstance(actual, Mapping) and not isinstance(declared, Mapping):
                # presets: the card lists names the class must have; the class may hold more (one added at run
                # time for an experiment or a test), which the registration simply does not advertise
                if set(_plain(declared)) <= set(actual):
                    continue
                actual = list(actual)
            if _plain(actual) != _plain(declared):
                raise SRBenchError(f"{self.target} has {key} {actual!r} but its registration says {declared!r}")
        return obj


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def lazy(target: str, *, args: tuple | None = None, **card) -> Lazy:
    """A registration of ``target`` (``"package.module:Attribute"``) by import path, with the ``card`` fields that
    listings show until it is imported (for a method: ``name``, ``version``, ``trains``, ``presets``, ``summary``).
    ``args``: call the attribute with them to get the registered object (a factory)."""
    if not isinstance(target, str) or not TARGET.fullmatch(target):
        raise SRBenchError(f"srbench.lazy({target!r}): expected 'package.module:Attribute'")
    return Lazy(target, dict(card), None if args is None else tuple(args))


def card_value(entry, key: str, default=None):
    """``key`` of a registered entry: from a lazy entry's card, otherwise from the object."""
    if isinstance(entry, Lazy):
        return entry.card.get(key, default)
    return getattr(entry, key, default)


class Entries(Mapping):
    """The registered objects of one kind by name. An entry registered by import path is imported on first access
    (``[name]``, ``values()``, ``items()``); membership, iteration and :meth:`peek` import nothing. ``on_error``
    turns an exception raised while importing into the one-line error to raise."""

    def __init__(self, kind: str, on_error):
        self.kind = kind
        self._items: dict = {}
        self._on_error = on_error

    def add(self, name: str, obj) -> None:
        self._items[name] = obj

    def pop(self, name: str) -> None:
        self._items.pop(name, None)

    def peek(self, name: str):
        """The entry as registered: the object, or its :class:`Lazy` stand-in."""
        return self._items[name]

    def __getitem__(self, name: str):
        obj = self._items[name]
        if isinstance(obj, Lazy):
            try:
                obj = obj.resolve()
            except Exception as exc:  # noqa: BLE001 - whatever the plugin's import raises becomes one line
                raise self._on_error(self.kind, name, exc) from exc
            self._items[name] = obj
        return obj

    def __contains__(self, name) -> bool:
        return name in self._items

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
