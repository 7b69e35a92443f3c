"""Each model's defaults, sizes and frame counts are spelled once, in its declaration
(src/framecast/models/), and every other module reads them from there.

The values looked for are taken from the declarations themselves, so a new model or a changed
default is covered without editing this file.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import get_args

import pytest

from framecast.models import ModelSpec, hunyuan15_i2v, hunyuan_i2v

SRC = Path(__file__).parents[2] / "src" / "framecast"
MODULES: tuple[ModuleType, ...] = (hunyuan_i2v, hunyuan15_i2v)
SPECS: tuple[ModelSpec, ...] = tuple(m.SPEC for m in MODULES)

ALLOWED: dict[str, str] = {
    "engines/hunyuan/pipeline.py": "prepare_latents overrides diffusers' method and keeps its "
    "stock signature (height=720, width=1280, num_frames=129); the engine passes every value",
}
"""Files that may spell such a value, and why."""

DISTINCTIVE = 100
"""Sizes and frame counts below this (5 frames, say) are everyday numbers, not a model's."""


def _size_values() -> set[int]:
    """Every side of every declared size, each bucket base, the default and most frames."""
    values: set[int] = set()
    for module, spec in zip(MODULES, SPECS, strict=True):
        for width, height in spec.sizes.values():
            values |= {width, height}
        values |= set(getattr(module, "BUCKET_BASE", {}).values())
        frames = spec.input.model_fields["num_frames"]
        values.add(frames.default)
        values |= {int(m.le) for m in frames.metadata if hasattr(m, "le")}
    return {v for v in values if v >= DISTINCTIVE}


def _option_values() -> dict[str, set[float]]:
    """Option name -> the numbers the declarations give it: input defaults, the options an
    engine gets for a default input, each model's fps and (1.5) each checkpoint's defaults."""
    values: dict[str, set[float]] = {}

    def add(name: str, value: object) -> None:
        if type(value) in (int, float):
            values.setdefault(name, set()).add(value)  # type: ignore[arg-type]

    for spec in SPECS:
        for name, field in spec.input.model_fields.items():
            add(name, field.default)
        default_input = spec.input.model_validate({"prompt": "p", spec.input.image_field: "x"})
        for name, value in default_input.model_options().items():
            add(name, value)
        add("fps", default_input.fps)
    for checkpoint in hunyuan15_i2v.CHECKPOINTS:
        for name in ("num_inference_steps", "guidance_scale", "flow_shift"):
            add(name, getattr(checkpoint, name))
    return values


def _named_values(tree: ast.AST) -> Iterator[tuple[str, ast.expr]]:
    """(name, value) of every parameter default, keyword argument, assignment and string-keyed
    dict entry: the places a default is given."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = node.args
            positional = args.posonlyargs + args.args
            yield from (
                (a.arg, d)
                for a, d in zip(positional[len(positional) - len(args.defaults) :], args.defaults)
            )
            yield from ((a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d)
        elif isinstance(node, ast.Call):
            yield from ((k.arg, k.value) for k in node.keywords if k.arg)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    yield target.id, node.value
                elif isinstance(target, ast.Attribute):
                    yield target.attr, node.value
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    yield key.value, value


def _number(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return None if isinstance(node.value, bool) else node.value
    return None


def _sources() -> Iterator[tuple[str, ast.AST]]:
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("models/") or relative in ALLOWED:
            continue
        yield relative, ast.parse(path.read_text(), filename=relative)


def test_no_module_outside_the_declarations_spells_a_size_or_frame_count() -> None:
    sizes = _size_values()
    assert {1248, 704, 848, 480, 129, 121, 241} <= sizes  # the values really were found
    found = [
        f"{relative}:{node.lineno}: {value}"
        for relative, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and (value := _number(node)) is not None
        and type(value) is int
        and value in sizes
    ]
    assert found == [], "import these from the model's module in framecast/models/"


def test_no_module_outside_the_declarations_spells_an_option_default() -> None:
    options = _option_values()
    assert options["num_inference_steps"] >= {50, 12} and options["fps"] == {24}
    found = [
        f"{relative}:{value_node.lineno}: {name}={value}"
        for relative, tree in _sources()
        for name, value_node in _named_values(tree)
        if (value := _number(value_node)) is not None and value in options.get(name, ())
    ]
    assert found == [], "import these from the model's module in framecast/models/"


def test_the_scan_finds_what_it_looks_for() -> None:
    # Each way a default used to be repeated before the declarations held them all.
    tree = ast.parse(
        "DEFAULTS = {'num_inference_steps': 50, 'cfg_scale': 1.0, 'seed': 0}\n"
        "def request(fps: int = 24, *, num_frames: int = 129, width: int = 3): ...\n"
        "Scheduler(flow_shift=7.0, shift=7.0)\n"
        "SIZE = (1248, 704, 5)\n"
    )
    options = _option_values()
    named = {
        (name, value)
        for name, node in _named_values(tree)
        if (value := _number(node)) is not None and value in options.get(name, ())
    }
    assert named == {
        ("num_inference_steps", 50),
        ("cfg_scale", 1.0),
        ("fps", 24),
        ("num_frames", 129),
        ("flow_shift", 7.0),
    }
    sizes = _size_values()
    assert {_number(n) for n in ast.walk(tree)} & sizes == {129, 1248, 704}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_the_input_offers_exactly_the_declared_sizes(spec: ModelSpec) -> None:
    # The field's choices and the size table are spelled side by side; they must agree.
    fields = spec.input.model_fields
    aspects = get_args(fields["aspect_ratio"].annotation)
    resolutions = get_args(fields["resolution"].annotation)
    assert set(spec.sizes) == {(a, r) for a in aspects for r in resolutions}


def test_declarations_import_neither_torch_nor_settings() -> None:
    # Settings and the engines import the declarations; the other way round would be a cycle.
    code = (
        "import sys\n"
        "import framecast.models.hunyuan_i2v, framecast.models.hunyuan15_i2v\n"
        "print(sorted(m for m in ('torch', 'framecast.settings', 'framecast.engines.hunyuan15"
        ".weights', 'framecast.engines.hunyuan.loader') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
