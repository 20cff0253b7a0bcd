"""Markdown reference pages generated from the configuration schemas: ``docs/protocol.md`` (the
``sus2md run`` protocol, :mod:`sus2md.protocol`), ``docs/training.md`` (the ``sus2md train``
config, :mod:`sus2md.train.config`) and ``docs/learning.md`` (the ``sus2md learn`` config,
:mod:`sus2md.active.config`).

One source of truth: a field's description is the schema's own, either a pydantic
``Field(description=...)`` or the ``#:`` comment lines right above the field (the Sphinx
convention ``protocol.py`` uses); a section's text is its class docstring.  Units come from the
suffix of the field name (``temperature_K``, ``timestep_fs``: STYLE rule 1), defaults and
allowed values from the annotations and their constraints.  ``sus2md schema protocol|train``
prints a page; ``tests/unit/test_reference_docs.py`` fails when a committed page differs from
the generated one, or a field has no description (or two).

No torch here: both schemas are plain pydantic.
"""
from __future__ import annotations

import inspect
import re
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = ["PAGES", "render", "undocumented", "field_description"]

#: field-name suffix -> unit (longest suffixes first)
UNITS = (
    ("_kJ_mol_nm", "kJ/(mol·nm)"), ("_per_ps", "1/ps"), ("_per_A", "1/Å"), ("_iterations", "iterations"), ("_steps", "steps"),
    ("_atoms", "atoms"), ("_bar", "bar"), ("_min", "min"), ("_fs", "fs"), ("_ps", "ps"), ("_K", "K"), ("_A", "Å"),
)
_BOUNDS = ((at.Gt, "gt", ">"), (at.Ge, "ge", "≥"), (at.Lt, "lt", "<"), (at.Le, "le", "≤"))


@dataclass(frozen=True)
class Section:
    """One table: the YAML path of its keys, its schema class and an optional heading."""

    path: str
    cls: type[BaseModel]
    heading: str = ""


@dataclass(frozen=True)
class Page:
    title: str
    source: str
    intro: str
    sections: tuple[Section, ...]


def _protocol_page() -> Page:
    from sus2md import protocol as p

    stages = tuple(Section("stages[]", cls, f"stages[] with type: {name}") for name, cls in p.STAGE_TYPES.items())
    intro = """\
A protocol is a YAML file (examples in `protocols/`) that `sus2md run PROTOCOL.yaml` runs into a
run directory.  `structure`, `model` and `stages` are required; every other key has the default
below.  Unknown keys and values outside the allowed ones are errors that name their YAML path
(`stages[1].pressure_bar: must be >= 0, got -5`).  Relative paths are relative to the protocol
file's directory.  A key with a unit says it in its name (`temperature_K`, `timestep_fs`,
`pressure_bar`), and the unit column repeats it.  The run directory keeps the resolved protocol
(`protocol.yaml`: every default filled, `duration_ps` turned into `steps`, stage names set)."""
    return Page("Protocol reference (`sus2md run`)", "sus2md/protocol.py", intro, (
        Section("", p.Protocol, "top level"),
        Section("structure", p.StructureSpec),
        Section("model", p.ModelSpec),
        Section("output", p.OutputSpec),
        Section("sweep", p.Sweep),
        Section("extrapolation", p.ExtrapolationSpec),
    ) + stages)


def _training_page() -> Page:
    from sus2md.train import config as c

    intro = """\
A training config is a YAML file (example: `examples/train_emt.yaml`) that `sus2md train
CONFIG.yaml` runs: it fits the model to the data and writes the `.mtp`, a checkpoint (`--resume`
continues from it) and JSON/CSV logs.  `model` and `data` are required; every other key has the
default below.  Unknown keys are errors that name their YAML path (`loss.force_weight: ...`).
Relative paths are relative to the config file's directory."""
    return Page("Training config reference (`sus2md train`)", "sus2md/train/config.py", intro, (
        Section("", c.TrainConfig, "top level"),
        Section("model", c.ModelSpec),
        Section("data", c.DataSpec),
        Section("loss", c.LossSpec),
        Section("optimizer", c.OptimizerSpec),
        Section("early_stopping", c.EarlyStoppingSpec),
        Section("output", c.OutputSpec),
    ))


def _learning_page() -> Page:
    from sus2md.active import config as a
    from sus2md.train import config as c

    intro = """\
A learning config is a YAML file (example: `examples/learn_emt.yaml`) that `sus2md learn
CONFIG.yaml [--out DIR] [--resume]` runs: label the initial structures, train, explore by MD
with the extrapolation grade, select by MaxVol, label, retrain from the previous model, until an
exploration round finds nothing above `grade.select_gamma` or a cap is reached.  `model`
(`sus2md train`'s model section) and the `training` recipe (its loss, optimizer and early
stopping) reuse the training schema; the loop sets the data and output files.  Unknown keys are
errors naming their YAML path; relative paths are relative to the config file's directory."""
    return Page("Active-learning config reference (`sus2md learn`)", "sus2md/active/config.py", intro, (
        Section("", a.LearnConfig, "top level"),
        Section("model", c.ModelSpec),
        Section("labeller", a.LabellerSpec),
        Section("exploration", a.ExploreSpec),
        Section("grade", a.GradeSpec),
        Section("training", a.TrainingSpec),
        Section("training.loss", c.LossSpec),
        Section("training.optimizer", c.OptimizerSpec),
        Section("training.early_stopping", c.EarlyStoppingSpec),
        Section("stopping", a.StopSpec),
    ))


#: page name -> (builder, committed file under the repository root)
PAGES = {"protocol": (_protocol_page, "docs/protocol.md"), "train": (_training_page, "docs/training.md"),
         "learn": (_learning_page, "docs/learning.md")}


# --- descriptions -------------------------------------------------------------------------------

def _comment_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` of the ``#:`` comment blocks right above fields in ``cls``'s own source."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    docs, block = {}, []
    for line in lines[1:]:
        s = line.strip()
        if s.startswith("#:"):
            block.append(s[2:].strip())
            continue
        m = re.match(r"^(\w+)\s*:", s)
        if block and m:
            docs[m.group(1)] = " ".join(block)
        block = []
    return docs


def _sources(cls: type[BaseModel], name: str) -> list[str]:
    """Every description of field ``name``: its Field description and the ``#:`` comment of the
    class that defines it (the first class along the MRO that annotates it)."""
    out = []
    info = cls.model_fields[name]
    if info.description:
        out.append(info.description)
    for klass in cls.__mro__:
        if name in klass.__dict__.get("__annotations__", {}):
            comment = _comment_docs(klass).get(name)
            if comment:
                out.append(comment)
            break
    return out


def field_description(cls: type[BaseModel], name: str) -> str:
    """The description of field ``name`` of ``cls`` ('' when it has none)."""
    found = _sources(cls, name)
    return found[0] if found else ""


def undocumented(page: str) -> list[str]:
    """``section.key`` of every field of ``page`` with no description, or with two."""
    out = []
    for s in PAGES[page][0]().sections:
        for name in s.cls.model_fields:
            n = len(_sources(s.cls, name))
            if n != 1:
                out.append(f"{s.path or '(top level)'}.{name}: {'no description' if n == 0 else 'two descriptions'}")
    return out


# --- types, defaults, units ---------------------------------------------------------------------

def _bounds(meta: list[Any]) -> list[str]:
    out = []
    for m in meta:
        if isinstance(m, FieldInfo):
            out += _bounds(list(m.metadata))
            continue
        for kind, attr, sign in _BOUNDS:
            if isinstance(m, kind):
                out.append(f"{sign} {getattr(m, attr):g}")
        if isinstance(m, at.MinLen) and m.min_length:
            out.append(f"at least {m.min_length} item{'s' if m.min_length > 1 else ''}")
    return out


def _section_of(cls: type) -> str:
    return f"mapping (section `{_SECTION_NAMES.get(cls, cls.__name__)}`)"


_SECTION_NAMES: dict[type, str] = {}


def _type_text(tp: Any, meta: list[Any] | None = None) -> str:
    """``integer ≥ 0``, ``one of `a`, `b` ``, ``list of number``, ``... or null``."""
    meta = list(meta or [])
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_text(args[0], meta + list(tp.__metadata__))
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in args if a is not type(None)]
        if len(parts) > 1 and all(isinstance(a, type) and issubclass(a, BaseModel) for a in
                                  (typing.get_args(p)[0] if typing.get_origin(p) is typing.Annotated else p
                                   for p in parts)):
            text = "a stage mapping (sections `stages[]` below)"
        else:
            text = " or ".join(_type_text(a) for a in parts)
        text = _with_bounds(text, meta)
        return text + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (list, tuple):
        item = _type_text(args[0]) if args else "value"
        return _with_bounds(f"list of {item}", meta)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _section_of(tp)
    names = {bool: "true or false", int: "integer", float: "number", str: "string", Path: "path"}
    return _with_bounds(names.get(tp, getattr(tp, "__name__", str(tp))), meta)


def _with_bounds(text: str, meta: list[Any]) -> str:
    b = _bounds(meta)
    return f"{text} {', '.join(b)}" if b and not text.startswith("list") else (f"{text}, {', '.join(b)}" if b else text)


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def _default(cls: type[BaseModel], name: str) -> str:
    info = cls.model_fields[name]
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    value = info.default if info.default_factory is None else info.default_factory()
    if isinstance(value, BaseModel):
        return "(its defaults)"
    return f"`{_yaml(value)}`"


def unit(name: str) -> str:
    """The unit a field name states by its suffix, or is (``steps``); '' when it states none."""
    if name == "steps":
        return "steps"
    return next((u for suffix, u in UNITS if name.endswith(suffix)), "")


# --- rendering ----------------------------------------------------------------------------------

def _rst_to_md(text: str) -> str:
    """reST literals and roles (``x``, :class:`x`) -> Markdown code."""
    return re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text.replace("``", "`"))


def _md(text: str) -> str:
    """One table-safe Markdown line."""
    return " ".join(_rst_to_md(text).replace("|", "\\|").split())


def _paragraphs(doc: str | None) -> list[str]:
    if not doc:
        return []
    text = _rst_to_md(inspect.cleandoc(doc))
    return [textwrap.fill(" ".join(p.split()), 100) for p in text.split("\n\n") if p.strip()]


def _table(section: Section) -> list[str]:
    rows = ["| key | allowed values | unit | default | description |", "|---|---|---|---|---|"]
    prefix = f"{section.path}." if section.path else ""
    fields = section.cls.model_fields
    for name in sorted(fields, key=lambda n: n != "type"):  # a stage's type first, then the schema's order
        info = fields[name]
        allowed = _type_text(info.annotation, list(info.metadata))
        rows.append(f"| `{prefix}{name}` | {_md(allowed)} | {unit(name) or '—'} | {_default(section.cls, name)} "
                    f"| {_md(field_description(section.cls, name))} |")
    return rows


def render(page: str) -> str:
    """The Markdown text of ``page`` (``protocol`` or ``train``)."""
    if page not in PAGES:
        from sus2md.errors import UsageError

        raise UsageError(f"unknown schema {page!r}; choose one of {', '.join(PAGES)}")
    p = PAGES[page][0]()
    _SECTION_NAMES.clear()
    _SECTION_NAMES.update({s.cls: s.path for s in p.sections if s.path and s.path != "stages[]"})
    out = [f"# {p.title}", "",
           f"<!-- generated by `sus2md schema {page} -o {PAGES[page][1]}` from {p.source}; edit the schema, "
           "not this page -->", "", p.intro, ""]
    stages_said = False
    for s in p.sections:
        if s.path == "stages[]" and not stages_said:
            out += ["## stages[]", "", "Each item of `stages` is a mapping whose `type` picks one of the tables "
                    "below; the stages run in order on the same system.", ""]
            stages_said = True
        level = "###" if s.path == "stages[]" else "##"
        out += [f"{level} {s.heading or s.path}", ""]
        for para in _paragraphs(s.cls.__doc__ if "__doc__" in s.cls.__dict__ else None):
            out += [para, ""]
        out += _table(s) + [""]
    return "\n".join(out).rstrip("\n") + "\n"
