"""A model's inputs as the CLI's flags: one declaration per input field, from which ``generate``
parses its flags and ``framecast models`` lists them, so the list cannot drift from the flags.

The image is an argument and the prompt a ``--prompt`` option of ``generate`` and ``submit``;
LoRAs are ``--lora NAME[:SCALE]``, repeated; every other field is ``--field-name VALUE``
(``--flag``/``--no-flag`` for a boolean), validated afterwards by the model's schema as the API
validates it.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from framecast.models import ModelSpec

LORAS = "loras"
"""The field ``--lora`` fills (RunComfy's name); a model without it takes no LoRAs."""


class FlagError(ValueError):
    pass


@dataclass(frozen=True)
class InputFlag:
    """One input field of a model as a ``--flag``."""

    field: str
    kind: type
    """bool, int, float or str: how the flag's text is read."""
    choices: tuple[str, ...]
    required: bool
    default: object
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    @property
    def usage(self) -> str:
        if self.kind is bool:
            return f"{self.flag} / --no-{self.flag[2:]}"
        value = "|".join(self.choices) or {int: "INT", float: "NUMBER"}.get(self.kind, "TEXT")
        return f"{self.flag} {value}"

    def read(self, text: str) -> object:
        try:
            return self.kind(text) if self.kind in {int, float} else text
        except ValueError:
            raise FlagError(f"{self.flag}: {text!r} is not a number") from None


def _help(info: FieldInfo) -> str:
    return " ".join((info.description or info.title or "").split())


def _flag(name: str, info: FieldInfo) -> InputFlag:
    annotation = info.annotation
    if get_origin(annotation) in {Union, types.UnionType}:
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    choices: tuple[str, ...] = ()
    if get_origin(annotation) is Literal:
        choices = tuple(str(c) for c in get_args(annotation))
        annotation = str
    kind: type = str
    if annotation is bool or annotation is int or annotation is float:
        kind = {"bool": bool, "int": int, "float": float}[annotation.__name__]
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    return InputFlag(name, kind, choices, info.is_required(), default, _help(info))


def input_flags(schema: type[BaseModel]) -> list[InputFlag]:
    """The ``--field-name`` flags of a model's input: every field but the prompt, the image and
    the LoRAs, which have flags of their own."""
    skip = {"prompt", LORAS, getattr(schema, "image_field", "")}
    return [_flag(n, info) for n, info in schema.model_fields.items() if n not in skip]


def parse_flags(schema: type[BaseModel], args: list[str]) -> dict[str, Any]:
    """``--field-name VALUE`` (``--flag``/``--no-flag``) as the input's fields, typed as the
    schema says; :class:`FlagError` for a flag the model does not have or a bad value."""
    flags = {flag.field: flag for flag in input_flags(schema)}
    values: dict[str, Any] = {}
    rest = list(args)
    while rest:
        given = rest.pop(0)
        name = given.removeprefix("--").replace("-", "_")
        negated = name.startswith("no_") and name[3:] in flags
        name = name[3:] if negated else name
        flag = flags.get(name) if given.startswith("--") else None
        if flag is None:
            known = ", ".join(f.flag for f in flags.values())
            raise FlagError(f"no option {given} for this model; its options: {known}")
        if flag.kind is bool:
            values[name] = not negated
            continue
        if negated or not rest:
            raise FlagError(f"{given} needs a value")
        values[name] = flag.read(rest.pop(0))
    return values


def lora_flag(text: str) -> dict[str, Any]:
    """``--lora NAME`` or ``--lora NAME:SCALE`` as the API's ``{"path", "scale"}``."""
    name, sep, scale = text.rpartition(":")
    if sep:
        try:
            return {"path": name, "scale": float(scale)}
        except ValueError:
            pass  # a name with a colon in it
    return {"path": text}


def describe(spec: ModelSpec) -> list[str]:
    """What ``framecast models`` prints for a model: its id, then each flag with its default and
    the field's whole description."""
    schema = spec.input
    fields = schema.model_fields
    rows = [
        (
            "IMAGE",
            "required",
            "The input image, an argument: a file (`submit` also takes an http(s):// or data: "
            f"URL); the API's {schema.image_field}.",
        ),
        ("--prompt TEXT", "required", _help(fields["prompt"])),
    ]
    for flag in input_flags(schema):
        if flag.required:
            default = "required"
        elif flag.kind is bool:
            default = f"default {flag.flag if flag.default else '--no-' + flag.flag[2:]}"
        else:
            # None: the field's description says what leaving it out does.
            default = "optional" if flag.default is None else f"default {flag.default}"
        rows.append((flag.usage, default, flag.help))
    if LORAS in fields:
        lora_help = "NAME or NAME:SCALE (1 by default), repeated for each; the API's loras: "
        rows.append(("--lora NAME[:SCALE]", "repeatable", lora_help + _help(fields[LORAS])))
    width = max(len(usage) for usage, _, _ in rows)
    return [f"{spec.id}: {spec.description}"] + [
        f"  {usage:<{width}}  ({default})  {text}" for usage, default, text in rows
    ]
