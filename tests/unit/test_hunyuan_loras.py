"""LoRAs on the tiny model: the folder, the bounded cache, switching per request (eager and
compiled), the base model to the bit without one, on FP8 linear layers too, and the file formats
read (diffusers', the original HunyuanVideo keys and musubi-tuner's).

The LoRA files are made here: PEFT adapters with random weights on the tiny transformer, saved
as diffusers does, plus one in the original HunyuanVideo key layout and one in musubi-tuner's.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("peft")

import numpy as np
import PIL.Image
import torch
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

from framecast.engines.base import GenerationRequest, NullHooks
from framecast.engines.hunyuan import engine as engine_module
from framecast.engines.hunyuan.engine import HunyuanEngine
from framecast.engines.hunyuan.fp8 import Float8Linear, Float8WeightLinear, convert_blocks_to_fp8
from framecast.engines.hunyuan.lora_formats import musubi_to_diffusers, official_name
from framecast.engines.hunyuan.loras import (
    LoraAdapters,
    LoraError,
    LoraFolder,
    LoraSettings,
)
from framecast.engines.hunyuan.pipeline import FramecastHunyuanPipeline
from framecast.engines.hunyuan.speedups import compile_blocks
from framecast.engines.hunyuan.tiny import build_tiny_pipeline
from framecast.engines.hunyuan.weights import resolve_model
from framecast.errors import InputError
from framecast.models.hunyuan_i2v import FPS
from framecast.models.request import LoraChoice

from .tiny_inputs import transformer_inputs

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
LORAS: dict[str, dict[str, Any]] = {
    "style": dict(rank=4, alpha=8, targets=[*ATTENTION, "proj_out"], seed=1),
    "motion": dict(rank=2, alpha=2, targets=["to_q", "to_v"], seed=2),
    "grain": dict(rank=3, alpha=3, targets=["ff.net.2", "proj_mlp"], seed=3),
    "light": dict(rank=2, alpha=4, targets=["to_out.0"], seed=4),
}


def save_lora(
    folder: Path, name: str, rank: int, alpha: int, targets: list[str], seed: int
) -> Path:
    """A random LoRA for the tiny transformer, saved as diffusers' save_lora_weights does."""
    transformer = build_tiny_pipeline().transformer
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer.add_adapter(config, adapter_name="new")
    FramecastHunyuanPipeline.save_lora_weights(
        folder,
        transformer_lora_layers=get_peft_model_state_dict(transformer, adapter_name="new"),
        weight_name=f"{name}.safetensors",
        transformer_lora_adapter_metadata=config.to_dict(),  # type: ignore[no-untyped-call]
    )
    return folder / f"{name}.safetensors"


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    for name, spec in LORAS.items():
        save_lora(folder, name, **spec)
    return folder


def forward(pipe: Any) -> torch.Tensor:
    with torch.inference_mode():
        out: torch.Tensor = pipe.transformer(**transformer_inputs())[0]
    return out


def tiny_pipeline(linear: str = "bf16") -> FramecastHunyuanPipeline:
    """The tiny pipeline, its blocks' linear layers converted to ``linear`` unless bf16."""
    pipe = FramecastHunyuanPipeline(**build_tiny_pipeline().components)
    if linear != "bf16":
        convert_blocks_to_fp8(pipe.transformer, linear)
    return pipe


def adapters(folder: Path, linear: str = "bf16", **settings: Any) -> LoraAdapters:
    return LoraAdapters(tiny_pipeline(linear), LoraSettings(folder, **settings))


def run(loras: LoraAdapters, *choices: tuple[str, float]) -> torch.Tensor:
    loras.use([LoraChoice(name, scale) for name, scale in choices])
    return forward(loras.pipe)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def base() -> torch.Tensor:
    return forward(build_tiny_pipeline())


def test_the_folder_lists_file_names_read_afresh(tmp_path: Path, lora_dir: Path) -> None:
    folder = LoraFolder(tmp_path)
    assert folder.names() == []
    shutil.copy(lora_dir / "motion.safetensors", tmp_path / "b.safetensors")
    (tmp_path / "notes.txt").write_text("not a LoRA")
    (tmp_path / ".hidden.safetensors").write_bytes(b"")
    assert folder.names() == ["b"]
    shutil.copy(lora_dir / "motion.safetensors", tmp_path / "a.v2.safetensors")
    assert folder.names() == ["a.v2", "b"]  # a file added later is there at once
    assert folder.unknown([LoraChoice("b"), LoraChoice("a.v2")]) is None


def test_an_unknown_name_is_refused_listing_what_there_is(lora_dir: Path) -> None:
    error = LoraFolder(lora_dir).unknown([LoraChoice("style"), LoraChoice("../style")])
    assert isinstance(error, InputError) and error.status == 422
    (detail,) = error.details["details"]
    assert detail["field"] == "loras.1.path"
    assert detail["allowed"] == ["grain", "light", "motion", "style"]
    assert "no LoRA named '../style'" in error.message and "grain, light" in error.message
    unset = LoraFolder(None).unknown([LoraChoice("style")])
    assert unset is not None and "FRAMECAST_LORA_DIR is not set" in unset.message
    with pytest.raises(LoraError, match="no LoRA named 'nope'"):
        adapters(lora_dir).use([LoraChoice("nope")])


def test_a_lora_changes_the_output_and_none_is_the_base_model_to_the_bit(
    lora_dir: Path, base: torch.Tensor
) -> None:
    loras = adapters(lora_dir)
    assert torch.equal(run(loras), base)  # nothing loaded yet
    styled = run(loras, ("style", 1.0))
    assert not torch.allclose(styled, base, atol=1e-3)
    assert torch.equal(run(loras), base)  # right after a request with a LoRA
    assert torch.equal(run(loras, ("style", 1.0)), styled)
    assert torch.equal(run(loras, ("style", 0.0)), base)
    assert torch.equal(run(loras), base)


def test_scales_and_combinations_match_diffusers_own_loading(lora_dir: Path) -> None:
    loras = adapters(lora_dir)
    ours = run(loras, ("style", 0.7), ("motion", -1.5))
    reference = FramecastHunyuanPipeline(**build_tiny_pipeline().components)
    reference.load_lora_weights(str(lora_dir / "style.safetensors"), adapter_name="s")
    reference.load_lora_weights(str(lora_dir / "motion.safetensors"), adapter_name="m")
    reference.set_adapters(["s", "m"], [0.7, -1.5])
    assert torch.equal(ours, forward(reference))
    # The alpha saved with the file counts (style: alpha 8 over rank 4).
    assert reference.transformer.peft_config["s"].lora_alpha == 8


def test_the_cache_is_bounded_and_unloads_the_least_recently_used(lora_dir: Path) -> None:
    loras = adapters(lora_dir, cache=3)
    expected = run(loras, ("motion", 1.0))
    run(loras, ("style", 1.0), ("grain", 1.0))
    run(loras, ("motion", 1.0))  # motion is now the most recently used
    assert loras.loaded() == ["style", "grain", "motion"]
    run(loras, ("light", 1.0))
    assert loras.loaded() == ["grain", "motion", "light"]
    assert len(loras.pipe.transformer.peft_config) == 3
    assert torch.equal(run(loras, ("motion", 1.0)), expected)


def test_a_file_replaced_under_the_same_name_is_loaded_again(
    tmp_path: Path, lora_dir: Path
) -> None:
    shutil.copy(lora_dir / "motion.safetensors", tmp_path / "x.safetensors")
    loras = adapters(tmp_path)
    (first,) = loras.use([LoraChoice("x")])
    before = forward(loras.pipe)
    shutil.copy(lora_dir / "light.safetensors", tmp_path / "x.safetensors")
    (second,) = loras.use([LoraChoice("x")])
    assert first.sha256 == sha256(lora_dir / "motion.safetensors")
    assert second.sha256 == sha256(lora_dir / "light.safetensors")
    assert not torch.equal(forward(loras.pipe), before)
    assert len(loras.pipe.transformer.peft_config) == 1


def test_too_high_a_rank_and_a_broken_file_are_clear_errors(
    tmp_path: Path, lora_dir: Path, base: torch.Tensor
) -> None:
    shutil.copy(lora_dir / "style.safetensors", tmp_path / "style.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    save_file({"proj_in.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    loras = adapters(tmp_path, max_rank=2)
    with pytest.raises(LoraError, match="rank 4, above FRAMECAST_LORA_MAX_RANK=2"):
        loras.use([LoraChoice("style")])
    with pytest.raises(LoraError, match="'broken' could not be loaded"):
        loras.use([LoraChoice("broken")])
    with pytest.raises(LoraError, match="'other' could not be loaded"):
        loras.use([LoraChoice("other")])
    assert loras.loaded() == [] and not getattr(loras.pipe.transformer, "peft_config", {})
    assert torch.equal(run(loras), base)


def test_the_original_hunyuanvideo_key_layout_loads_as_its_diffusers_equivalent(
    tmp_path: Path,
) -> None:
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(4, 32, generator=g), torch.randn(96, 4, generator=g) / 4
    pa, pb = torch.randn(4, 32, generator=g), torch.randn(32, 4, generator=g) / 4
    save_file(
        {
            "diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight": a,
            "diffusion_model.double_blocks.0.img_attn_qkv.lora_B.weight": b,
            "diffusion_model.double_blocks.0.img_attn_proj.lora_A.weight": pa,
            "diffusion_model.double_blocks.0.img_attn_proj.lora_B.weight": pb,
        },
        tmp_path / "original.safetensors",
    )
    prefix = "transformer.transformer_blocks.0.attn"
    diffusers_keys = {
        f"{prefix}.to_out.0.lora_A.weight": pa,
        f"{prefix}.to_out.0.lora_B.weight": pb,
    }
    for name, part in zip(["to_q", "to_k", "to_v"], b.chunk(3), strict=True):
        diffusers_keys[f"{prefix}.{name}.lora_A.weight"] = a.clone()
        diffusers_keys[f"{prefix}.{name}.lora_B.weight"] = part.contiguous()
    save_file(diffusers_keys, tmp_path / "converted.safetensors")
    loras = adapters(tmp_path)
    assert torch.equal(run(loras, ("original", 0.5)), run(loras, ("converted", 0.5)))


def test_compiled_blocks_switch_loras_of_other_ranks_without_recompiling(
    lora_dir: Path, base: torch.Tensor
) -> None:
    eager = adapters(lora_dir)
    expected = {
        "style": run(eager, ("style", 1.0)),
        "motion": run(eager, ("motion", 0.5)),
        "both": run(eager, ("motion", 0.5), ("style", -1.0)),
        "light": run(eager, ("light", 2.0)),
    }
    loras = adapters(lora_dir, max_rank=8)
    loras.prepare_for_compile()
    torch._dynamo.reset()  # graphs other tests compiled for these block classes
    # aot_eager: dynamo's tracing and guards, which decide recompiles, without minutes of
    # C++ compiling on a CPU; inductor's arithmetic is tested in test_hunyuan_speedups.py.
    compile_blocks(loras.pipe.transformer, backend="aot_eager")

    def close(actual: torch.Tensor, wanted: torch.Tensor) -> None:
        torch.testing.assert_close(actual, wanted, rtol=1e-5, atol=1e-5)

    plain = run(loras)  # one graph for no LoRA
    close(plain, base)
    close(run(loras, ("style", 1.0)), expected["style"])
    both = run(loras, ("style", -1.0), ("motion", 0.5))  # and one for two
    close(both, expected["both"])
    with torch._dynamo.config.patch(error_on_recompile=True):
        # Another LoRA of another rank and scale in the same slot: the same graph.
        close(run(loras, ("motion", 0.5)), expected["motion"])
        close(run(loras, ("style", 1.0)), expected["style"])
        # Loaded while compiled (staged as an adapter, copied, deleted): still no recompile.
        close(run(loras, ("light", 2.0)), expected["light"])
        # No LoRA right after LoRAs: the compiled base model's output, to the bit.
        assert torch.equal(run(loras), plain)
        # Kept in their slots whatever the order: only the scales are written.
        close(run(loras, ("motion", 0.5), ("style", -1.0)), expected["both"])


def test_compiled_slots_refuse_a_rank_above_the_padding(lora_dir: Path) -> None:
    loras = adapters(lora_dir, max_rank=3)
    loras.prepare_for_compile()
    with pytest.raises(LoraError, match="rank 4, above FRAMECAST_LORA_MAX_RANK=3"):
        loras.use([LoraChoice("style")])
    assert "framecast_staging" not in loras.pipe.transformer.peft_config
    loras.use([LoraChoice("grain")])  # rank 3 fits
    assert loras.loaded() == ["grain"]


def test_engine_applies_and_records_the_loras_of_a_request(lora_dir: Path) -> None:
    engine = HunyuanEngine.load(resolve_model("tiny-random"), loras=LoraSettings(lora_dir))
    image = PIL.Image.new("RGB", (64, 48), (200, 80, 40))

    def request(*loras: LoraChoice) -> GenerationRequest:
        return GenerationRequest(
            image=image,
            prompt="waves roll in",
            seed=9,
            width=64,
            height=48,
            num_frames=5,
            fps=FPS,
            options={"num_inference_steps": 2, "loras": loras},
        )

    def frames(req: GenerationRequest) -> np.ndarray:
        return np.stack(list(engine.generate(req, NullHooks())))

    plain = frames(request())
    styled_request = request(LoraChoice("style", 0.8))
    assert not np.array_equal(frames(styled_request), plain)
    np.testing.assert_array_equal(frames(request()), plain)
    sha = sha256(lora_dir / "style.safetensors")
    described = engine.describe(styled_request)
    assert described["loras"] == [{"path": "style", "scale": 0.8, "sha256": sha}]
    assert "loras" not in engine.describe(request())


# -- FP8 linear layers -------------------------------------------------------------------------

FP8_MODES = ["fp8", "fp8-weight"]


@contextmanager
def lora_by_hand(pipe: Any, folder: Path, *choices: tuple[str, float]) -> Iterator[None]:
    """The LoRAs computed without PEFT: a forward hook on each layer a file adapts adds
    ``scale * alpha / rank * B(A(x))``, in float32, to whatever the layer computed."""

    def add(delta: tuple[torch.Tensor, torch.Tensor, float], _m: Any, args: Any, out: Any) -> Any:
        a, b, scale = delta
        return out + torch.nn.functional.linear(torch.nn.functional.linear(args[0], a), b) * scale

    hooks = []
    for name, scale in choices:
        spec = LORAS[name]
        weights = load_file(folder / f"{name}.safetensors")
        for key in weights:
            if key.endswith(".lora_A.weight"):
                module = key.removeprefix("transformer.").removesuffix(".lora_A.weight")
                b = weights[key.replace("lora_A", "lora_B")]
                delta = (weights[key], b, scale * spec["alpha"] / spec["rank"])
                layer = pipe.transformer.get_submodule(module)
                hooks.append(layer.register_forward_hook(functools.partial(add, delta)))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("linear", FP8_MODES)
def test_on_fp8_layers_a_lora_adds_its_delta_and_none_is_the_fp8_model_to_the_bit(
    lora_dir: Path, linear: str
) -> None:
    fp8_type = {"fp8": Float8Linear, "fp8-weight": Float8WeightLinear}[linear]
    plain = forward(tiny_pipeline(linear))
    loras = adapters(lora_dir, linear)
    assert torch.equal(run(loras), plain)
    ours = run(loras, ("style", 0.7), ("motion", -1.5))
    assert not torch.allclose(ours, plain, atol=1e-3)
    # PEFT wrapped the FP8 layers themselves, and kept the adapters in the compute dtype.
    wrapped = [m for m in loras.pipe.transformer.modules() if isinstance(m, LoraLayer)]
    assert sum(isinstance(m.get_base_layer(), fp8_type) for m in wrapped) >= 4
    adapter_weights = [p for n, p in loras.pipe.transformer.named_parameters() if "lora_" in n]
    assert adapter_weights and all(p.dtype == torch.float32 for p in adapter_weights)

    reference = tiny_pipeline(linear)
    with lora_by_hand(reference, lora_dir, ("style", 0.7), ("motion", -1.5)):
        expected = forward(reference)
    # The same sums in another order: equal to the last float32 bits.
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(run(loras), plain)  # right after a request with LoRAs
    assert torch.equal(run(loras, ("style", 0.7), ("motion", -1.5)), ours)


def test_an_fp8_engine_compiles_with_lora_slots_and_switches_without_recompiling(
    lora_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fp8 only (it always compiles; fp8-weight compiles the same PEFT layers when asked), and
    # aot_eager rather than inductor, as in the bf16 test above: the compiled FP8 layers are
    # checked against eager in test_hunyuan_fp8.py.
    monkeypatch.setattr(
        engine_module, "compile_blocks", functools.partial(compile_blocks, backend="aot_eager")
    )
    torch._dynamo.reset()
    engine = HunyuanEngine.load(
        resolve_model("tiny-random"), linear="fp8", loras=LoraSettings(lora_dir, max_rank=4)
    )
    assert engine.compiled and engine.metadata()["linear"] == "fp8 (e4m3, row-wise scales)"
    image = PIL.Image.new("RGB", (64, 48), (200, 80, 40))

    def frames(*loras: LoraChoice) -> np.ndarray:
        request = GenerationRequest(
            image=image,
            prompt="waves roll in",
            seed=9,
            width=64,
            height=48,
            num_frames=5,
            fps=FPS,
            options={"num_inference_steps": 2, "loras": loras},
        )
        return np.stack(list(engine.generate(request, NullHooks()))).astype(int)

    plain = frames()  # compiles the graph without LoRAs
    assert not np.array_equal(frames(LoraChoice("style", 0.8)), plain)  # and the one with one
    with torch._dynamo.config.patch(error_on_recompile=True):
        # Another LoRA, of another rank and scale, in the same slot: the same graph.
        motion = frames(LoraChoice("motion", -1.5))
        np.testing.assert_array_equal(frames(), plain)
    assert not np.array_equal(motion, plain)
    with torch.compiler.set_stance("force_eager"):
        assert int(np.abs(frames(LoraChoice("motion", -1.5)) - motion).max()) <= 1


# -- musubi-tuner's layout ---------------------------------------------------------------------

# The official layers of one block (musubi's names, dots for underscores) and diffusers' layers
# they hold, in the order of their rows: the reverse of what lora_formats.py does, written out.
MUSUBI_LAYERS = {
    "double_blocks.0": {
        "img_attn_qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
        "img_attn_proj": ["attn.to_out.0"],
        "img_mlp.fc1": ["ff.net.0.proj"],
        "img_mlp.fc2": ["ff.net.2"],
        "img_mod.linear": ["norm1.linear"],
        "txt_attn_qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
        "txt_attn_proj": ["attn.to_add_out"],
        "txt_mlp.fc1": ["ff_context.net.0.proj"],
        "txt_mlp.fc2": ["ff_context.net.2"],
        "txt_mod.linear": ["norm1_context.linear"],
    },
    "single_blocks.0": {
        "linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"],
        "linear2": ["proj_out"],
        "modulation.linear": ["norm.linear"],
    },
}
DIFFUSERS_BLOCKS = {
    "double_blocks.0": "transformer_blocks.0",
    "single_blocks.0": "single_transformer_blocks.0",
}


def test_musubi_names_resolve_to_the_official_layers_and_alpha_0_means_rank() -> None:
    assert official_name("lora_unet_double_blocks_19_img_mlp_fc1") == "double_blocks.19.img_mlp.fc1"
    assert (
        official_name("lora_unet_double_blocks_0_txt_mod_linear")
        == "double_blocks.0.txt_mod.linear"
    )
    assert official_name("lora_unet_single_blocks_39_linear1") == "single_blocks.39.linear1"
    assert (
        official_name("lora_unet_single_blocks_7_modulation_linear")
        == "single_blocks.7.modulation.linear"
    )
    for name in ("lora_unet_double_blocks_0_img_attn_q_norm", "lora_unet_final_layer_linear"):
        with pytest.raises(ValueError, match="not a linear layer of HunyuanVideo"):
            official_name(name)
    down, up = torch.ones(2, 8), torch.ones(8, 2)
    proj = "lora_unet_double_blocks_0_img_attn_proj"
    converted = musubi_to_diffusers(
        {
            f"{proj}.lora_down.weight": down,
            f"{proj}.lora_up.weight": up,
            f"{proj}.alpha": torch.tensor(0.0),  # musubi-tuner's rule: 0 means alpha = rank
        },
        hidden_size=8,
    )
    assert converted.keys() == {
        "transformer.transformer_blocks.0.attn.to_out.0.lora_A.weight",
        "transformer.transformer_blocks.0.attn.to_out.0.lora_B.weight",
    }
    assert torch.equal(
        converted["transformer.transformer_blocks.0.attn.to_out.0.lora_B.weight"], up
    )
    with pytest.raises(ValueError, match=r"has alpha, lora_down\.0\.weight"):
        musubi_to_diffusers(
            {
                "lora_unet_single_blocks_0_linear2.lora_down.0.weight": down,
                "lora_unet_single_blocks_0_linear2.alpha": torch.tensor(1.0),
            },
            hidden_size=8,
        )


def test_a_musubi_tuner_file_loads_as_its_diffusers_equivalent(tmp_path: Path) -> None:
    rank, alpha = 4, 2
    transformer = build_tiny_pipeline().transformer
    g = torch.Generator().manual_seed(6)
    musubi: dict[str, torch.Tensor] = {}
    diffusers_keys: dict[str, torch.Tensor] = {}
    for block, layers in MUSUBI_LAYERS.items():
        for official, targets in layers.items():
            modules = [transformer.get_submodule(f"{DIFFUSERS_BLOCKS[block]}.{t}") for t in targets]
            down = torch.randn(rank, modules[0].in_features, generator=g)
            ups = [torch.randn(m.out_features, rank, generator=g) / 4 for m in modules]
            name = "lora_unet_" + f"{block}.{official}".replace(".", "_")
            musubi[f"{name}.lora_down.weight"] = down.to(torch.bfloat16)  # as musubi saves
            musubi[f"{name}.lora_up.weight"] = torch.cat(ups).to(torch.bfloat16)
            musubi[f"{name}.alpha"] = torch.tensor(alpha, dtype=torch.bfloat16)
            for target, up in zip(targets, ups, strict=True):
                prefix = f"transformer.{DIFFUSERS_BLOCKS[block]}.{target}"
                diffusers_keys[f"{prefix}.lora_A.weight"] = down.to(torch.bfloat16)
                diffusers_keys[f"{prefix}.lora_B.weight"] = up.to(torch.bfloat16)
    save_file(musubi, tmp_path / "musubi.safetensors")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=sorted({k.split(".", 1)[1].rsplit(".", 2)[0] for k in diffusers_keys}),
    )
    FramecastHunyuanPipeline.save_lora_weights(
        tmp_path,
        transformer_lora_layers={
            k.removeprefix("transformer."): v for k, v in diffusers_keys.items()
        },
        weight_name="diffusers.safetensors",
        transformer_lora_adapter_metadata=config.to_dict(),  # type: ignore[no-untyped-call]
    )
    # What the conversion is for: diffusers alone fails on the musubi file.
    with pytest.raises(RuntimeError, match="chunk expects at least a 1-dimensional tensor"):
        tiny_pipeline().load_lora_weights(str(tmp_path / "musubi.safetensors"))

    loras = adapters(tmp_path)
    reference = run(loras, ("diffusers", 0.8))
    assert not torch.allclose(reference, run(loras), atol=1e-3)
    # alpha / rank = 1/2 folded into B is exact, so the sums are the same to the bit.
    assert torch.equal(run(loras, ("musubi", 0.8)), reference)
    # Every layer of both blocks was adapted, q, k and v from their fused parent.
    adapted = loras._adapter_layers(loras._cache["musubi"].adapter or "")
    assert len(adapted) == sum(len(t) for layers in MUSUBI_LAYERS.values() for t in layers.values())
