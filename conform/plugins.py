"""Extension by pluggy hooks, the way pytest does it.

Transforms, case sources, known divergences and oracles come from plugins. The built-in ones are the
default plugin (:mod:`conform.builtin`); a user's package adds its own through the
``fx_conform`` entry-point group, ``conform run --plugin MODULE`` or pytest's
``--conform-plugin MODULE``. A plugin is a module (or object) with hook implementations::

    from conform.plugins import hookimpl
    from conform.registry import TransformSpec

    @hookimpl
    def conform_transforms():
        return [TransformSpec(name="fold_constants", target="mypkg.passes:fold_constants",
                              convention="graph_module", description="...")]

A row whose target is not one of the reimplemented modules is one-sided (checked against
eager only). ``MODULE:ATTR`` where a plugin module is expected is a user's pass, an implicit
plugin adding such a row (:mod:`conform.user_pass`).

Plugins named on the command line are loaded in every worker process, in ``replay`` and in
repro scripts, so a campaign sees the same rows everywhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from conform.errors import UsageError

if TYPE_CHECKING:
    from conform.known import KnownDivergence
    from conform.registry import TransformSpec
    from generators.sources import Source

PROJECT = "fx_conform"
ENTRY_POINT_GROUP = "fx_conform"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Hooks:
    """The hook specifications."""

    @hookspec
    def conform_transforms(self) -> list[TransformSpec]:
        """Registry rows this plugin adds."""

    @hookspec
    def conform_sources(self) -> dict[str, Callable[[], Source]]:
        """Case sources this plugin adds: name to a factory returning the source."""

    @hookspec
    def conform_known(self) -> list[KnownDivergence]:
        """Known-divergence entries this plugin adds."""

    @hookspec
    def conform_oracles(self) -> list[Callable[[Any, dict[str, Any]], list[str] | None]]:
        """Oracles this plugin adds, run on every check after the differential ones.

        An oracle is called as ``oracle(findings, sides)``: ``findings`` holds the prepared
        case (``findings.prepared``: ``built``, ``graph_module``, the eager ``expected``
        execution), the registry ``row`` and the ``params``, and records a finding with
        ``findings.add(stage, symptom, message, side=impl, place=..., failure=..., diffs=...)``;
        ``sides`` maps each implementation (``"reference"``, ``"upstream"``, ``"user"``) to its
        :class:`conform.engine.Side` (``applied``, ``execution``, ``failure``, ...). It returns
        the names of the checks it ran (``"<oracle>:<impl>"``, recorded in the outcome's notes)
        and never raises to report a finding; a finding's place should name the oracle, so its
        outcomes have an origin of their own.
        """

    @hookspec
    def conform_case_factories(self) -> list[str]:
        """``"module:function"`` case factories this plugin vouches for (they may be
        built when a recorded case names them)."""

    @hookspec
    def conform_summary(self, summary: dict[str, Any]) -> dict[str, Any] | None:
        """Extra sections for summary.json: return a dict merged under ``plugins``."""


_state: dict[str, Any] = {"manager": None, "loaded": [], "generation": 0}


def manager() -> pluggy.PluginManager:
    """The process's plugin manager: the built-in plugin and the entry-point plugins."""
    if _state["manager"] is None:
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(Hooks)
        from conform import builtin

        pm.register(builtin, "builtin")
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        _state["manager"] = pm
        _changed()
    return _state["manager"]


def _changed() -> None:
    """A plugin came or went: hand its sources and vouched-for factories to the generators
    (which never import conform) and invalidate cached hook results."""
    _state["generation"] += 1
    from generators import sources

    pm = _state["manager"]
    for part in reversed(pm.hook.conform_sources()):
        for name, factory in (part or {}).items():
            if name not in sources.source_names() or name not in sources.BUILTIN_SOURCES:
                sources.register_source(name, factory)
    for part in pm.hook.conform_case_factories():
        for path in part or ():
            sources.trust_factory(path)
    # a plugin's known entries replay their witnesses, which build factory cases of the
    # witness modules: the plugin vouches for those modules' functions
    for part in pm.hook.conform_known():
        for entry in part or ():
            sources.trust_factory(f"{entry.witness.partition(':')[0]}:*")


def generation() -> int:
    """Changes whenever a plugin is registered; caches of hook results key on it."""
    manager()
    return _state["generation"]


def register(plugin: Any, name: str | None = None) -> None:
    """Register a plugin object or module (idempotent by name)."""
    pm = manager()
    name = name or getattr(plugin, "__name__", None) or repr(plugin)
    if pm.has_plugin(name):
        return
    pm.register(plugin, name)
    _changed()


def load(modules: Iterable[str], *, cases: Iterable[str] = ()) -> None:
    """Import each named module and register it as a plugin; trust the named case factories.

    A ``MODULE:ATTR`` name is a user's pass (:mod:`conform.user_pass`): it is imported and
    registered as a plugin adding its one-sided row, named the same.

    Raises:
        UsageError: a module cannot be imported, or a pass name names no pass (the message
            names it).
    """
    for name in modules:
        if ":" in name:
            # MODULE:ATTR is a user's pass, an implicit plugin adding its one-sided row
            from conform.user_pass import UserPass

            if not manager().has_plugin(name):
                register(UserPass(name), name)
        else:
            try:
                module = importlib.import_module(name)
            except Exception as exc:
                raise UsageError(f"cannot load plugin {name!r}: {type(exc).__name__}: {exc}; "
                                 "give an importable module name (--plugin MODULE)") from None
            register(module, name)
        if name not in _state["loaded"]:
            _state["loaded"].append(name)
    if cases:
        from generators.sources import trust_factory

        for path in cases:
            trust_factory(path)


def reset() -> None:
    """Forget every plugin loaded in this process (the next call starts from the built-in
    and entry-point plugins again); for tests."""
    _state["manager"] = None
    _state["loaded"] = []
    _state["generation"] += 1


def loaded() -> list[str]:
    """Modules loaded with :func:`load`, in order (workers and repros load the same)."""
    return list(_state["loaded"])


def collect(hook: str) -> list[Any]:
    """Every plugin's result of a list-returning hook, flattened (built-in first)."""
    results = getattr(manager().hook, hook)()
    out: list[Any] = []
    for part in reversed(results):  # pluggy calls the last registered first
        out.extend(part or ())
    return out


def collect_mapping(hook: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in reversed(getattr(manager().hook, hook)()):
        out.update(part or {})
    return out
