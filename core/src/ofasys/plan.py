"""The logical plan: an instruction bound to the installed plugins.

Like a database planning a query, :func:`build_plan` turns the parsed instruction(s) of a task into a
:class:`Plan` that names, for every slot, the plugin distribution that owns its type, its typed attributes
(defaults filled in) and the component variant of each lifecycle stage. A plan is plain data: it is printed
by ``ofasys explain``, saved in checkpoints as JSON, and rebuilt from JSON without re-planning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Union

from .errors import InstructionError, did_you_mean
from .instruction import Group, Instruction, Marker, Slot, Text, parse_templates
from .spec import STAGES, SlotType

# The core's own components for token slots (shared embedding, cross entropy, sequence generator).
CORE_TOKEN_DEFAULTS: dict[str, str] = {"adaptor": "tokens", "criterion": "cross_entropy", "generator": "sequence"}
STAGE_ATTRS = STAGES  # `preprocess=`, `adaptor=`, ... select a variant on any slot
PLAIN_TEXT_TYPE = "TEXT"
_CORE = ("ofasys", None)


@dataclass
class SlotPlan:
    """One slot bound to its plugin. ``literal`` is set for plain text (a TEXT slot with a fixed value)."""

    key: str
    type: str
    side: str
    column: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    components: dict[str, str | None] = field(default_factory=dict)
    kind: str = "tokens"
    plugin: str = ""
    version: str = ""
    literal: str | None = None
    group: int | None = None
    output_fields: tuple[str, ...] = ()
    vocab_blocks: tuple[str, ...] = ()

    @property
    def adaptor_key(self) -> str:
        """Identifies the adaptor module in the universal model: slots with the same key share weights."""
        return self.attrs.get("share", None) or f"{self.type}.{self.components.get('adaptor')}"

    @property
    def is_output(self) -> bool:
        return self.side == "decoder"

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def to_json(self) -> dict:
        return {"key": self.key, "type": self.type, "side": self.side, "column": self.column,
                "attrs": dict(self.attrs), "components": dict(self.components), "kind": self.kind,
                "plugin": self.plugin, "version": self.version, "literal": self.literal, "group": self.group,
                "output_fields": list(self.output_fields), "vocab_blocks": list(self.vocab_blocks)}

    @classmethod
    def from_json(cls, d: dict) -> "SlotPlan":
        d = dict(d)
        d["output_fields"] = tuple(d.get("output_fields", ()))
        d["vocab_blocks"] = tuple(d.get("vocab_blocks", ()))
        return cls(**d)


@dataclass
class GroupPlan:
    """A repetition group: ``items`` repeat once per element of the list-valued ``columns``."""

    index: int
    items: list["Item"]

    @property
    def columns(self) -> list[str]:
        return [i.column for i in self.items if isinstance(i, SlotPlan) and i.column]


Item = Union[SlotPlan, GroupPlan, str]  # a str item is a marker: "BOS" or "EOS"


@dataclass
class TemplatePlan:
    """One instruction template of a task, with its plain-text pieces planned as literal TEXT slots."""

    source: str
    encoder: list[Item]
    decoder: list[Item]

    def items(self, side: str) -> list[Item]:
        return self.encoder if side == "encoder" else self.decoder

    def walk(self, side: str | None = None) -> Iterator[SlotPlan]:
        for s in ([side] if side else ["encoder", "decoder"]):
            stack = list(reversed(self.items(s)))
            while stack:
                it = stack.pop()
                if isinstance(it, SlotPlan):
                    yield it
                elif isinstance(it, GroupPlan):
                    stack.extend(reversed(it.items))


@dataclass
class Plan:
    """The plan of one task: its templates and its column-bound slots."""

    task: str
    templates: list[TemplatePlan]
    slots: dict[str, SlotPlan]  # column-bound slots by key (shared by all templates)

    @property
    def instruction(self) -> str:
        return self.templates[0].source

    @property
    def outputs(self) -> list[SlotPlan]:
        return [s for s in self.slots.values() if s.side == "decoder"]

    @property
    def target_kind(self) -> str:
        return "features" if any(s.kind == "features" for s in self.outputs) else "tokens"

    def input_columns(self) -> list[str]:
        return [s.column for s in self.slots.values() if s.side == "encoder" and s.column]

    def output_columns(self) -> list[str]:
        return [s.column for s in self.slots.values() if s.side == "decoder" and s.column]

    def columns(self) -> list[str]:
        return self.input_columns() + [c for c in self.output_columns() if c not in self.input_columns()]

    def group_columns(self) -> set[str]:
        out: set[str] = set()
        for s in self.slots.values():
            if s.group is not None and s.column:
                out.add(s.column)
        return out

    def all_slots(self) -> Iterator[SlotPlan]:
        """Every slot of every template, literal ones included (column slots once)."""
        seen = set()
        for t in self.templates:
            for s in t.walk():
                if id(s) not in seen:
                    seen.add(id(s))
                    yield s

    def slot_types(self) -> set[str]:
        return {s.type for s in self.all_slots()}

    # ------------------------------------------------------------------------------ JSON
    def to_json(self) -> dict:
        def item(it: Item) -> Any:
            if isinstance(it, SlotPlan):
                return {"literal": it.to_json()} if it.literal is not None else {"slot": it.key}
            if isinstance(it, GroupPlan):
                return {"group": it.index, "items": [item(x) for x in it.items]}
            return {"marker": it}

        return {"task": self.task, "slots": {k: s.to_json() for k, s in self.slots.items()},
                "templates": [{"source": t.source, "encoder": [item(i) for i in t.encoder],
                               "decoder": [item(i) for i in t.decoder]} for t in self.templates]}

    @classmethod
    def from_json(cls, d: dict) -> "Plan":
        slots = {k: SlotPlan.from_json(v) for k, v in d["slots"].items()}

        def item(x: dict) -> Item:
            if "slot" in x:
                return slots[x["slot"]]
            if "literal" in x:
                return SlotPlan.from_json(x["literal"])
            if "group" in x:
                return GroupPlan(x["group"], [item(i) for i in x["items"]])
            return x["marker"]

        templates = [TemplatePlan(t["source"], [item(i) for i in t["encoder"]], [item(i) for i in t["decoder"]])
                     for t in d["templates"]]
        return cls(d["task"], templates, slots)


# ---------------------------------------------------------------------------------------------- planning

class _Planner:
    def __init__(self, manager, task: str):
        self.manager = manager
        self.task = task
        self.text_spec: tuple[SlotType, str, str] | None = None
        self.group_counter = 0
        self.literal_counter = 0

    def spec(self, type_name: str, source: str, span: tuple[int, int]) -> tuple[SlotType, str, str]:
        return self.manager.slot_type(type_name, source, span)

    def plan_slot(self, slot: Slot, side: str, source: str, group: int | None) -> SlotPlan:
        spec, dist, version = self.spec(slot.type, source, slot.span)
        if side not in spec.sides:
            where = "an input (left of '->')" if side == "encoder" else "an output (right of '->')"
            raise InstructionError(f"slot type {slot.type} cannot be {where}", source, *slot.span,
                                   hint=f"{slot.type} is valid only on the {' and '.join(spec.sides)} side.")
        attrs: dict[str, Any] = {}
        chosen: dict[str, str | None] = {}
        for name, raw in slot.attrs:
            span = slot.attr_span(name)
            if name in STAGE_ATTRS:
                if raw is True:
                    raise InstructionError(f"attribute '{name}' needs a variant name, e.g. {name}=...", source, *span)
                chosen[name] = str(raw)
                continue
            a = spec.attribute(name)
            if a is None:
                known = [x.name for x in spec.attributes] + list(STAGE_ATTRS)
                raise InstructionError(
                    f"unknown attribute '{name}' for slot type {slot.type}.{did_you_mean(name, known)}", source, *span,
                    hint=f"{slot.type} accepts: {', '.join(known)}.")
            if side not in a.sides:
                where = "input" if side == "encoder" else "output"
                raise InstructionError(f"attribute '{name}' is not valid on an {where} slot", source, *span,
                                       hint=f"'{name}' is valid only on the {' and '.join(a.sides)} side.")
            try:
                attrs[name] = a.convert(raw)
            except ValueError as exc:
                raise InstructionError(str(exc), source, *span) from None
        for a in spec.attributes:
            if side in a.sides:
                attrs.setdefault(a.name, a.default)
        components = self.components(spec, chosen, slot, source)
        kind = spec.kind_for(components.get("preprocess"))
        if side == "decoder" and kind == "features" and not (components.get("criterion") and
                                                               components.get("generator")):
            variants = ", ".join(f"preprocess={v}" for v in spec.token_variants)
            raise InstructionError(
                f"slot type {slot.type} cannot be an output with preprocess={components.get('preprocess')}: "
                "its plugin declares no criterion and generator for it", source, *slot.span,
                hint=f"Output variants of {slot.type}: {variants}." if variants else
                f"{slot.type} is an input-only slot type.")
        if kind == "tokens":
            for stage, default in CORE_TOKEN_DEFAULTS.items():
                if components.get(stage) is None:
                    components[stage] = default
        column = slot.column
        if column is None and spec.needs_column:
            column = slot.type.lower()
        if group is not None and column is None:
            raise InstructionError("a slot inside a repetition group needs a column holding a list", source,
                                   *slot.span)
        blocks: tuple[str, ...] = ()
        if kind == "tokens":
            blocks = spec.vocab_blocks
            if spec.vocab_blocks_for is not None:
                try:
                    blocks = tuple(spec.vocab_blocks_for(attrs))
                except ValueError as exc:
                    raise InstructionError(str(exc), source, *slot.span) from None
        return SlotPlan(key=column or f"{slot.type}@{side}", type=slot.type, side=side, column=column, attrs=attrs,
                        components=components, kind=kind, plugin=dist, version=version, group=group,
                        output_fields=spec.output_fields, vocab_blocks=blocks)

    def components(self, spec: SlotType, chosen: dict[str, str], slot: Slot, source: str) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for stage in STAGES:
            variants = tuple(spec.components.get(stage, ()))
            core_default = CORE_TOKEN_DEFAULTS.get(stage)
            allowed = variants + ((core_default,) if core_default and core_default not in variants else ())
            if stage in chosen:
                value = chosen[stage]
                if value not in allowed:
                    span = slot.attr_span(stage)
                    raise InstructionError(
                        f"{slot.type} has no {stage} variant '{value}'.{did_you_mean(value, allowed)}", source, *span,
                        hint=f"Available: {', '.join(allowed) or 'none'}.")
                out[stage] = value
            else:
                out[stage] = variants[0] if variants else None
        return out

    def plan_text(self, text: Text, side: str, source: str, group: int | None) -> SlotPlan:
        spec, dist, version = self.spec(PLAIN_TEXT_TYPE, source, text.span)
        attrs = {a.name: a.default for a in spec.attributes if side in a.sides}
        components = self.components(spec, {}, Slot(PLAIN_TEXT_TYPE), source)
        for stage, default in CORE_TOKEN_DEFAULTS.items():
            components[stage] = components.get(stage) or default
        self.literal_counter += 1
        return SlotPlan(key=f"text#{self.literal_counter}", type=PLAIN_TEXT_TYPE, side=side, column=None,
                        attrs=attrs, components=components, kind="tokens", plugin=dist, version=version,
                        literal=text.text, group=group, output_fields=(), vocab_blocks=spec.vocab_blocks)

    def plan_items(self, elements, side: str, source: str, slots: dict[str, SlotPlan],
                   group: int | None = None) -> list[Item]:
        items: list[Item] = []
        for el in elements:
            if isinstance(el, Slot):
                sp = self.plan_slot(el, side, source, group)
                prev = slots.get(sp.key)
                if prev is not None:
                    if (prev.type, prev.attrs, prev.components, prev.side, prev.group) != \
                            (sp.type, sp.attrs, sp.components, sp.side, sp.group):
                        raise InstructionError(
                            f"column '{sp.key}' is bound twice with different slot types, attributes or sides",
                            source, *el.span, hint="Bind each column once, or give the slots identical settings.")
                    sp = prev
                else:
                    slots[sp.key] = sp
                items.append(sp)
            elif isinstance(el, Text):
                items.append(self.plan_text(el, side, source, group))
            elif isinstance(el, Marker):
                items.append(el.name)
            elif isinstance(el, Group):
                self.group_counter += 1
                items.append(GroupPlan(self.group_counter, self.plan_items(el.elements, side, source, slots,
                                                                           self.group_counter)))
        return items

    def plan_template(self, ins: Instruction, source: str) -> tuple[TemplatePlan, dict[str, SlotPlan]]:
        slots: dict[str, SlotPlan] = {}
        enc = self.plan_items(ins.encoder, "encoder", source, slots)
        dec = self.plan_items(ins.decoder, "decoder", source, slots)
        tp = TemplatePlan(str(ins), enc, dec)
        dec_slots = [s for s in tp.walk("decoder") if s.literal is None]
        arrow_span = ins.arrow_span
        if not dec_slots:
            raise InstructionError("the output side (right of '->') has no slot: there is nothing to learn or generate",
                                   source, *arrow_span, hint="Add an output slot, e.g. '-> [TEXT:answer]'.")
        features = [s for s in dec_slots if s.kind == "features"]
        if features and len(list(tp.walk("decoder"))) > 1:
            f = features[0]
            raise InstructionError(
                f"an output slot of type {f.type} ({f.components.get('preprocess')}) produces continuous data and "
                "must be the only element right of '->'", source, *arrow_span,
                hint="Move other slots and plain text to the input side.")
        if features and any(s.group is not None for s in features):
            raise InstructionError("a continuous output slot cannot repeat inside a group", source, *arrow_span)
        return tp, slots


def build_plan(instruction: "str | list[str]", manager=None, task: str = "") -> Plan:
    """Plan a task's instruction(s) with the installed plugins (or ``manager``).

    Several templates (a list, or one string with alternatives separated by ``|||``) must bind the same
    columns with the same slot settings; one is drawn per example at training time.
    Raises :class:`InstructionError` pointing at the span for every problem.
    """
    from .plugins import get_manager

    manager = manager or get_manager()
    templates = parse_templates(instruction)
    planner = _Planner(manager, task)
    planned: list[TemplatePlan] = []
    slots: dict[str, SlotPlan] = {}
    for i, ins in enumerate(templates):
        source = ins.source or str(ins)
        tp, tslots = planner.plan_template(ins, source)
        if i == 0:
            slots = tslots
        else:
            if set(tslots) != set(slots):
                missing = sorted(set(slots) - set(tslots))
                extra = sorted(set(tslots) - set(slots))
                raise InstructionError(
                    f"template {i + 1} binds different columns than template 1"
                    f"{' (missing: ' + ', '.join(missing) + ')' if missing else ''}"
                    f"{' (extra: ' + ', '.join(extra) + ')' if extra else ''}", source, 0, len(source),
                    hint="All templates of a task must use the same columns with the same slot settings.")
            for k, sp in tslots.items():
                ref = slots[k]
                if (ref.type, ref.attrs, ref.components, ref.side) != (sp.type, sp.attrs, sp.components, sp.side):
                    raise InstructionError(f"template {i + 1} binds column '{k}' differently than template 1",
                                           source, 0, len(source))
            # share the SlotPlan objects so every template refers to the same column slots
            _rebind(tp, slots)
        planned.append(tp)
    return Plan(task, planned, slots)


def _rebind(tp: TemplatePlan, slots: dict[str, SlotPlan]) -> None:
    def fix(items: list[Item]) -> list[Item]:
        out: list[Item] = []
        for it in items:
            if isinstance(it, SlotPlan) and it.literal is None:
                out.append(slots[it.key])
            elif isinstance(it, GroupPlan):
                out.append(GroupPlan(it.index, fix(it.items)))
            else:
                out.append(it)
        return out

    tp.encoder = fix(tp.encoder)
    tp.decoder = fix(tp.decoder)
