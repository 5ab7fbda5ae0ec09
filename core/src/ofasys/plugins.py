"""Plugin discovery and the typed facade the core calls hooks through.

Plugins are found through the ``ofasys.slots`` entry-point group, one entry point per slot type::

    [project.entry-points."ofasys.slots"]
    IMAGE = "ofasys_image.plugin"
    BOX = "ofasys_image.box"

A plugin module is imported only when an instruction names its slot type (or when plugins are listed), so a
broken or heavy plugin costs nothing to tasks that do not use it. A module that fails to import is isolated:
the failure is recorded with its distribution and the original traceback (as ``__cause__``), reported by
``ofasys plugins``, and raised only when an instruction needs that slot type.

Environment variables:

``OFASYS_PLUGINS``
    Comma-separated distributions to allow (``ofasys-text,ofasys-image``); others are ignored.
``OFASYS_DISABLE_PLUGINS``
    Comma-separated distributions to ignore.
``OFASYS_PREFER``
    Resolves two distributions claiming one slot type: ``IMAGE=my-image-plugin,TEXT=ofasys-text``.
``OFASYS_STRICT_PLUGINS``
    ``1`` makes a plugin that fails to load raise at once instead of being isolated.

Version ranges: a distribution whose requirements declare an ``ofasys`` range that excludes the installed core
(``dependencies = ["ofasys>=0.3,<0.4"]`` with ofasys 0.1.0 installed) is skipped before anything is imported:
``ofasys plugins`` lists it with the reason, and an instruction naming one of its slot types fails with the same
message (:class:`PluginVersionError`).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from .errors import InstructionError, PluginConflictError, PluginError, did_you_mean
from .spec import Architecture, Metric, SlotType, VocabBlock

ENTRY_POINT_GROUP = "ofasys.slots"

# First-party slot types and the distribution that provides each: used only to tell a user what to install.
KNOWN_SLOT_TYPES: dict[str, str] = {
    "TEXT": "ofasys-text", "IMAGE": "ofasys-image", "BOX": "ofasys-image", "AUDIO": "ofasys-audio",
    "PHONE": "ofasys-audio", "VIDEO": "ofasys-video", "MOTION": "ofasys-motion", "STRUCT": "ofasys-struct",
}
_EXTRA_OF = {"ofasys-text": "text", "ofasys-image": "image", "ofasys-audio": "audio", "ofasys-video": "video",
             "ofasys-motion": "motion", "ofasys-struct": "struct"}


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [x.strip() for x in raw.split(",") if x.strip()]


class PluginVersionError(PluginError):
    """A plugin distribution declares an ``ofasys`` version range that excludes the installed core; it is skipped."""

    exit_code = 2


def core_requirement_conflict(requires: Iterable[str] | None, core_version: str | None = None) -> str | None:
    """The ``ofasys`` specifier of a distribution's requirements when it excludes ``core_version`` (default: the
    installed core), else ``None``. Requirements behind an extra (``ofasys[all]; extra == "x"``) do not count."""
    if not requires:
        return None
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    from . import __version__

    try:
        core = Version(core_version or __version__)
    except InvalidVersion:  # pragma: no cover - our own version is valid
        return None
    for raw in requires:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != "ofasys":
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.specifier and not req.specifier.contains(core, prereleases=True):
            # as the author wrote it (packaging sorts the clauses)
            written = raw.split(";")[0].strip()[len(req.name):].strip()
            written = re.sub(r"^\[[^\]]*\]", "", written).strip().strip("()").replace(" ", "")
            return written or str(req.specifier)
    return None


@dataclass
class EntryPointInfo:
    """One ``ofasys.slots`` entry point, before or after loading."""

    slot_type: str
    module: str
    distribution: str
    version: str
    loaded: bool = False
    error: BaseException | None = None


@dataclass
class PluginInfo:
    """A plugin distribution as ``ofasys plugins`` shows it."""

    name: str
    version: str
    slot_types: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: bool = False  # its ofasys range excludes the installed core: never imported
    conflicts: list[str] = field(default_factory=list)  # unresolved claims of a slot type another distribution makes
    notes: list[str] = field(default_factory=list)  # e.g. a claim OFASYS_PREFER resolved in another's favour

    @property
    def status(self) -> str:
        """``ok``, ``error`` (a module failed to load), ``skipped`` (version conflict) or ``conflict``."""
        if self.skipped:
            return "skipped"
        if self.error:
            return "error"
        if self.conflicts:
            return "conflict"
        return "ok"

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version, "slot_types": sorted(self.slot_types),
                "hooks": sorted(self.hooks), "modules": sorted(self.modules), "error": self.error,
                "status": self.status, "conflicts": list(self.conflicts), "notes": list(self.notes)}


def _format_error(exc: BaseException) -> str:
    cause = exc.__cause__
    if cause is not None and str(cause) not in str(exc):
        return f"{exc} ({type(cause).__name__}: {cause})"
    return str(exc)


class PluginManager:
    """Finds, loads and isolates plugins; the only place the core touches pluggy.

    One manager per process is the usual case (:func:`get_manager`); tests make fresh ones. ``entry_points``
    may be injected (a list of ``importlib.metadata.EntryPoint``) to test discovery without installing.
    """

    def __init__(self, entry_points: Iterable[Any] | None = None, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._lock = threading.RLock()
        self._eps: dict[str, list[EntryPointInfo]] | None = None
        self._injected = list(entry_points) if entry_points is not None else None
        self._load_entry_points = load_entry_points
        self._modules: dict[str, ModuleType | Any] = {}  # module name -> registered plugin object
        self._module_dist: dict[str, tuple[str, str]] = {}  # module name -> (distribution, version)
        self._slot_types: dict[str, tuple[SlotType, str, str]] = {}  # type -> (spec, dist, version)
        self._load_errors: dict[str, PluginError] = {}  # module name -> error
        self._owner: dict[str, str] = {}  # slot type -> module name that declared it
        # distribution -> (version, slot types, error) of distributions skipped for their ofasys range
        self._skipped: dict[str, tuple[str, list[str], PluginVersionError]] = {}
        self._conflicts: dict[str, PluginConflictError] = {}  # slot type -> unresolved two-provider claim
        if os.environ.get("OFASYS_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda s: sys.stderr.write(s))
            self.pm.enable_tracing()

    # ------------------------------------------------------------------------------------------ discovery
    def _discover(self) -> dict[str, list[EntryPointInfo]]:
        if self._eps is not None:
            return self._eps
        with self._lock:
            if self._eps is not None:
                return self._eps
            found: dict[str, list[EntryPointInfo]] = {}
            if self._injected is not None:
                eps = self._injected
            elif self._load_entry_points:
                from importlib.metadata import entry_points

                eps = entry_points(group=ENTRY_POINT_GROUP)
            else:
                eps = []
            allow = _env_list("OFASYS_PLUGINS")
            block = set(_env_list("OFASYS_DISABLE_PLUGINS") or [])
            seen: set[tuple[str, str, str]] = set()
            version_ok: dict[str, bool] = {}
            for ep in eps:
                dist = getattr(ep, "dist", None)
                dname = dist.metadata["Name"] if dist is not None else "unknown"
                dver = dist.version if dist is not None else "0"
                if (allow is not None and dname not in allow) or dname in block:
                    continue
                key = (ep.name, ep.value, dname)
                if key in seen:  # the same distribution seen twice on sys.path (symlinked lib64, ...)
                    continue
                seen.add(key)
                if dist is not None and dname not in version_ok:
                    version_ok[dname] = self._check_core_version(dist, dname, dver)
                if not version_ok.get(dname, True):
                    self._skipped[dname][1].append(ep.name)
                    continue
                found.setdefault(ep.name, []).append(EntryPointInfo(ep.name, ep.value.split(":")[0], dname, dver))
            self._eps = found
            return found

    def _check_core_version(self, dist: Any, dname: str, dver: str) -> bool:
        try:
            requires = dist.requires
        except Exception:  # unreadable metadata: let the import decide
            return True
        spec = core_requirement_conflict(requires)
        if spec is None:
            return True
        from . import __version__

        err = PluginVersionError(
            f"plugin {dname} {dver} requires ofasys{spec}, but ofasys {__version__} is installed; it was skipped. "
            f"Install a release of {dname} made for ofasys {__version__} (pip install -U {dname}), or an ofasys "
            f"in {spec}.", distribution=dname)
        self._skipped[dname] = (dver, [], err)
        return False

    def skipped(self) -> dict[str, PluginVersionError]:
        """Distributions skipped because their ``ofasys`` range excludes the installed core, with the reason."""
        self._discover()
        return {d: v[2] for d, v in self._skipped.items()}

    def available_slot_types(self) -> list[str]:
        """Slot types some installed distribution claims (loaded or not)."""
        return sorted(set(self._discover()) | set(self._slot_types))

    def _choose(self, slot_type: str, candidates: list[EntryPointInfo]) -> EntryPointInfo:
        if len({c.distribution for c in candidates}) == 1:
            return candidates[0]
        prefer = {}
        for item in _env_list("OFASYS_PREFER") or []:
            if "=" in item:
                k, v = item.split("=", 1)
                prefer[k.strip()] = v.strip()
        if slot_type in prefer:
            for c in candidates:
                if c.distribution == prefer[slot_type]:
                    return c
        names = " and ".join(sorted(c.distribution for c in candidates))
        raise PluginConflictError(
            f"slot type {slot_type} is provided by two distributions: {names}. Choose one with "
            f"OFASYS_PREFER={slot_type}=<distribution>, or uninstall/disable the other "
            f"(OFASYS_DISABLE_PLUGINS=<distribution>).")

    # ------------------------------------------------------------------------------------------ loading
    def register(self, plugin: Any, name: str | None = None, distribution: str = "in-memory",
                 version: str = "0") -> None:
        """Register a plugin object or module directly (tests, notebooks). Its slot types are declared at once."""
        with self._lock:
            mname = name or getattr(plugin, "__name__", None) or f"plugin-{id(plugin)}"
            if mname in self._modules:
                return
            self.pm.register(plugin, name=mname)
            self._modules[mname] = plugin
            self._module_dist[mname] = (distribution, version)
            self._declare(plugin, mname, distribution, version)

    def unregister(self, name: str) -> None:
        with self._lock:
            plugin = self._modules.pop(name, None)
            if plugin is not None:
                self.pm.unregister(plugin)
            self._module_dist.pop(name, None)
            for t in [t for t, owner in self._owner.items() if owner == name]:
                self._slot_types.pop(t, None)
                self._owner.pop(t, None)

    def _declare(self, plugin: Any, mname: str, dist: str, version: str) -> None:
        declared: list[SlotType] = []
        for impl in self.pm.hook.ofasys_register_slot_types.get_hookimpls():
            if impl.plugin is plugin:
                impl.function(register=lambda st: declared.append(st))
        for st in declared:
            if not isinstance(st, SlotType):
                raise PluginError(f"plugin {mname} ({dist}) registered {st!r}, which is not an ofasys.spec.SlotType",
                                  distribution=dist)
            prev = self._slot_types.get(st.name)
            if prev is not None and prev[1] != dist:
                raise PluginConflictError(
                    f"slot type {st.name} is provided by two distributions: {prev[1]} and {dist}. Choose one with "
                    f"OFASYS_PREFER={st.name}=<distribution>.")
            self._slot_types[st.name] = (st, dist, version)
            self._owner[st.name] = mname

    def _load_module(self, info: EntryPointInfo) -> None:
        mname = info.module
        if mname in self._modules:
            info.loaded = True
            return
        if mname in self._load_errors:
            info.error = self._load_errors[mname]
            raise self._load_errors[mname]
        try:
            module = importlib.import_module(mname)
            self.pm.register(module, name=mname)
        except Exception as exc:  # isolate: record and re-raise for this slot type only
            err = PluginError(
                f"plugin {info.distribution} {info.version} failed to load its module {mname!r} "
                f"(entry point {info.slot_type}): {type(exc).__name__}: {exc}",
                distribution=info.distribution, entry_point=info.slot_type)
            err.__cause__ = exc
            self._load_errors[mname] = err
            info.error = err
            if os.environ.get("OFASYS_STRICT_PLUGINS") == "1":
                raise err from exc
            raise err
        self._modules[mname] = module
        self._module_dist[mname] = (info.distribution, info.version)
        try:
            self._declare(module, mname, info.distribution, info.version)
        except PluginError as err:
            self.pm.unregister(module)
            self._modules.pop(mname, None)
            self._load_errors[mname] = err
            info.error = err
            raise
        info.loaded = True

    def load_slot_type(self, slot_type: str) -> tuple[SlotType, str, str]:
        """Load the plugin that provides ``slot_type``; return ``(spec, distribution, version)``.

        Raises :class:`PluginError` (broken plugin), :class:`PluginConflictError` (two providers) or
        ``KeyError`` (nobody provides it; see :meth:`missing_slot_type_hint`).
        """
        with self._lock:
            if slot_type in self._slot_types:
                return self._slot_types[slot_type]
            candidates = self._discover().get(slot_type)
            if not candidates:
                for _, types, err in self._skipped.values():
                    if slot_type in types:
                        raise err
                raise KeyError(slot_type)
            info = self._choose(slot_type, candidates)
            self._load_module(info)
            if slot_type not in self._slot_types:
                raise PluginError(
                    f"plugin {info.distribution} declares entry point {slot_type} but its module {info.module!r} "
                    f"registered no slot type named {slot_type}", distribution=info.distribution,
                    entry_point=slot_type)
            return self._slot_types[slot_type]

    def load_all(self) -> None:
        """Import every discovered plugin module (for listing); failures are recorded, not raised.

        A slot type two distributions claim loads only the one ``OFASYS_PREFER`` chooses; unresolved, neither
        is loaded and the conflict is recorded (see :meth:`conflicts`)."""
        for slot_type, candidates in sorted(self._discover().items()):
            if len({c.distribution for c in candidates}) > 1:
                try:
                    candidates = [self._choose(slot_type, candidates)]
                except PluginConflictError as err:
                    self._conflicts[slot_type] = err
                    continue
            for info in candidates:
                try:
                    self._load_module(info)
                except PluginError:
                    pass

    def conflicts(self) -> dict[str, list[str]]:
        """Slot types claimed by more than one distribution and not resolved by ``OFASYS_PREFER``."""
        out: dict[str, list[str]] = {}
        for slot_type, candidates in self._discover().items():
            dists = sorted({c.distribution for c in candidates})
            if len(dists) > 1:
                try:
                    self._choose(slot_type, candidates)
                except PluginConflictError:
                    out[slot_type] = dists
        return out

    def missing_slot_type_message(self, slot_type: str) -> tuple[str, str]:
        """(message, hint) for a slot type nobody provides."""
        installed = self.available_slot_types()
        if slot_type in KNOWN_SLOT_TYPES:
            dist = KNOWN_SLOT_TYPES[slot_type]
            return (f"slot type {slot_type} needs the plugin {dist}, which is not installed",
                    f'Install it: pip install {dist}   (or: pip install "ofasys[{_EXTRA_OF[dist]}]")')
        return (f"unknown slot type {slot_type}",
                f"Installed slot types: {', '.join(installed) or 'none'}.{did_you_mean(slot_type, installed)}")

    def slot_type(self, name: str, instruction: str = "", span: tuple[int, int] = (0, 0)) -> tuple[SlotType, str, str]:
        """Like :meth:`load_slot_type`, but turns failures into an :class:`InstructionError` at ``span``."""
        try:
            return self.load_slot_type(name)
        except KeyError:
            msg, hint = self.missing_slot_type_message(name)
            raise InstructionError(msg, instruction, span[0], span[1], hint) from None
        except PluginVersionError as err:
            raise InstructionError(f"the plugin for slot type {name} was skipped: {err}", instruction, span[0],
                                   span[1], hint=f"Or disable it with OFASYS_DISABLE_PLUGINS={err.distribution}."
                                   ) from err
        except PluginError as err:
            raise InstructionError(f"the plugin for slot type {name} is broken: {_format_error(err)}",
                                   instruction, span[0], span[1],
                                   hint=f"Reinstall or fix {err.distribution}, or disable it with "
                                        f"OFASYS_DISABLE_PLUGINS={err.distribution}.") from err

    # ------------------------------------------------------------------------------------------ listing
    def plugin_infos(self) -> list[PluginInfo]:
        """Every discovered distribution with its slot types, implemented hooks and load error (loads all)."""
        self.load_all()
        infos: dict[str, PluginInfo] = {}
        for slot_type, candidates in self._discover().items():
            for info in candidates:
                pi = infos.setdefault(info.distribution, PluginInfo(info.distribution, info.version))
                if info.module not in pi.modules:
                    pi.modules.append(info.module)
                if info.error is not None or info.module in self._load_errors:
                    err = info.error or self._load_errors[info.module]
                    pi.error = (pi.error + "; " if pi.error else "") + _format_error(err)
                elif slot_type not in pi.slot_types:
                    pi.slot_types.append(slot_type)
        for mname, plugin in self._modules.items():
            dist, ver = self._module_dist[mname]
            pi = infos.setdefault(dist, PluginInfo(dist, ver))
            if mname not in pi.modules:
                pi.modules.append(mname)
            for st, (_, d, _) in self._slot_types.items():
                if d == dist and st not in pi.slot_types:
                    pi.slot_types.append(st)
            for hc in self.pm.get_hookcallers(plugin) or []:
                if hc.name not in pi.hooks:
                    pi.hooks.append(hc.name)
        for dist, (ver, types, err) in self._skipped.items():
            pi = infos.setdefault(dist, PluginInfo(dist, ver))
            pi.skipped = True
            pi.error = str(err)
            pi.slot_types = sorted(set(pi.slot_types) | set(types))
        for slot_type, candidates in sorted(self._discover().items()):
            dists = sorted({c.distribution for c in candidates})
            if len(dists) > 1:
                try:
                    chosen = self._choose(slot_type, candidates).distribution
                except PluginConflictError:
                    continue
                for dist in dists:
                    if dist != chosen:
                        infos[dist].notes.append(f"its slot type {slot_type} is not used: "
                                                 f"OFASYS_PREFER={slot_type}={chosen}")
        for slot_type, dists in sorted(self.conflicts().items()):
            for dist in dists:
                others = " and ".join(d for d in dists if d != dist)
                infos[dist].conflicts.append(
                    f"slot type {slot_type} is also claimed by {others}; neither is loaded until you choose one "
                    f"with OFASYS_PREFER={slot_type}=<distribution> or disable one with "
                    f"OFASYS_DISABLE_PLUGINS=<distribution>")
        return sorted(infos.values(), key=lambda p: p.name)

    def hook_implementations(self, hook: str) -> list[dict]:
        """Who implements ``hook`` (loads all plugins): one dict per implementation with its distribution,
        module, function and source location, in call order (pluggy calls the last registered first)."""
        self.load_all()
        caller = getattr(self.pm.hook, hook, None)
        if caller is None:
            raise KeyError(hook)
        out = []
        names = {id(p): n for n, p in self._modules.items()}
        for impl in reversed(caller.get_hookimpls()):
            mname = names.get(id(impl.plugin), getattr(impl.plugin, "__name__", repr(impl.plugin)))
            dist, ver = self._module_dist.get(mname, ("unknown", ""))
            fn = impl.function
            code = getattr(fn, "__code__", None)
            out.append({"distribution": dist, "version": ver, "module": mname,
                        "function": getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn))),
                        "file": code.co_filename if code else None, "line": code.co_firstlineno if code else None,
                        "tryfirst": impl.tryfirst, "trylast": impl.trylast})
        return out

    def slot_types(self) -> dict[str, tuple[SlotType, str, str]]:
        return dict(self._slot_types)

    # ------------------------------------------------------------------------------------------ typed facade
    def _collect(self, hook: Callable[..., Any], **kwargs: Any) -> list[Any]:
        out: list[Any] = []
        hook(register=lambda item: out.append(item), **kwargs)
        return out

    def vocab_blocks(self, names: Iterable[str]) -> list[VocabBlock]:
        """The vocabulary blocks with these names, from the loaded plugins."""
        wanted = set(names)
        blocks = {b.name: b for b in self._collect(self.pm.hook.ofasys_register_vocab_blocks, names=frozenset(wanted))
                  if b.name in wanted}
        missing = wanted - set(blocks)
        if missing:
            raise PluginError(f"no loaded plugin provides the vocabulary block(s) {', '.join(sorted(missing))}")
        return [blocks[n] for n in sorted(blocks)]

    def metrics(self) -> dict[str, Metric]:
        return {m.name: m for m in self._collect(self.pm.hook.ofasys_register_metrics)}

    def demo_tasks(self) -> list:
        """Every installed plugin's demo tasks (loads all plugins)."""
        self.load_all()
        return sorted(self._collect(self.pm.hook.ofasys_register_demo_tasks), key=lambda t: (t.modality, t.name))

    def architectures(self) -> dict[str, Architecture]:
        return {a.name: a for a in self._collect(self.pm.hook.ofasys_register_architectures)}

    def build(self, stage: str, slot: Any, ctx: Any) -> Any:
        """Call the factory hook of a lifecycle ``stage`` for one planned slot; ``None`` if no plugin answers."""
        hook = {"preprocess": self.pm.hook.ofasys_preprocess, "adaptor": self.pm.hook.ofasys_adapt,
                "criterion": self.pm.hook.ofasys_criterion, "generator": self.pm.hook.ofasys_generate,
                "postprocess": self.pm.hook.ofasys_postprocess}[stage]
        try:
            return hook(slot=slot, ctx=ctx)
        except Exception as exc:
            if isinstance(exc, (PluginError, InstructionError)):
                raise
            from .errors import OfasysError

            if isinstance(exc, OfasysError):
                raise
            dist = self._slot_types.get(getattr(slot, "type", ""), (None, "unknown", ""))[1]
            raise PluginError(f"plugin {dist} failed to build the {stage} of slot {slot.type}"
                              f"{':' + slot.column if getattr(slot, 'column', None) else ''}: "
                              f"{type(exc).__name__}: {exc}", distribution=dist) from exc


_MANAGER: PluginManager | None = None
_MANAGER_LOCK = threading.Lock()


def get_manager() -> PluginManager:
    """The process-wide plugin manager (created on first use; entry points enumerated once)."""
    global _MANAGER
    if _MANAGER is None:
        with _MANAGER_LOCK:
            if _MANAGER is None:
                _MANAGER = PluginManager()
    return _MANAGER


def set_manager(manager: PluginManager | None) -> PluginManager | None:
    """Replace the process-wide manager (tests); returns the previous one."""
    global _MANAGER
    prev, _MANAGER = _MANAGER, manager
    return prev
