"""LoRAs on the tiny HunyuanVideo 1.5 model: each file layout its trainers write read into the
same diffusers layers, another model's LoRA refused saying whose it is, a request's LoRA applied
and recorded, the base model to the bit without one, and switching under compile without a
recompile.

The files are written here from the layouts' documented key names (see
engines/hunyuan15/lora_formats.py), each holding the same LoRA: random matrices on one double
block's every linear layer (q, k and v sharing their ``down``, so that the fused layouts can hold
them too), a token-refiner layer and the final modulation.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("peft")

import numpy as np
import torch
from safetensors.torch import save_file

from framecast.engines.base import GenerationRequest, NullHooks
from framecast.engines.hunyuan.loras import LoraAdapters, LoraError, LoraSettings
from framecast.engines.hunyuan.speedups import compile_blocks
from framecast.engines.hunyuan15 import engine as engine_module
from framecast.engines.hunyuan15.engine import Hunyuan15Engine
from framecast.engines.hunyuan15.lora_formats import to_diffusers
from framecast.engines.hunyuan15.pipeline import FramecastHunyuan15Pipeline
from framecast.engines.hunyuan15.tiny import build_tiny_pipeline
from framecast.engines.hunyuan15.weights import resolve_model
from framecast.models.hunyuan15_i2v import FPS
from framecast.models.request import LoraChoice

from .tiny_inputs import gradient_image, transformer15_inputs

RANK, ALPHA = 4, 8.0
BLOCK = "transformer_blocks.1"
# diffusers' layer -> (official name, its part of a fused official layer), written out from the
# official MMDoubleStreamBlock's and token refiner's names: the reverse of lora_formats.py.
OFFICIAL = {
    f"{BLOCK}.norm1.linear": ("double_blocks.1.img_mod.linear", None),
    f"{BLOCK}.norm1_context.linear": ("double_blocks.1.txt_mod.linear", None),
    f"{BLOCK}.attn.to_q": ("double_blocks.1.img_attn_q", 0),
    f"{BLOCK}.attn.to_k": ("double_blocks.1.img_attn_k", 1),
    f"{BLOCK}.attn.to_v": ("double_blocks.1.img_attn_v", 2),
    f"{BLOCK}.attn.add_q_proj": ("double_blocks.1.txt_attn_q", 0),
    f"{BLOCK}.attn.add_k_proj": ("double_blocks.1.txt_attn_k", 1),
    f"{BLOCK}.attn.add_v_proj": ("double_blocks.1.txt_attn_v", 2),
    f"{BLOCK}.attn.to_out.0": ("double_blocks.1.img_attn_proj", None),
    f"{BLOCK}.attn.to_add_out": ("double_blocks.1.txt_attn_proj", None),
    f"{BLOCK}.ff.net.0.proj": ("double_blocks.1.img_mlp.fc1", None),
    f"{BLOCK}.ff.net.2": ("double_blocks.1.img_mlp.fc2", None),
    f"{BLOCK}.ff_context.net.0.proj": ("double_blocks.1.txt_mlp.fc1", None),
    f"{BLOCK}.ff_context.net.2": ("double_blocks.1.txt_mlp.fc2", None),
    "context_embedder.token_refiner.refiner_blocks.0.ff.net.2": (
        "txt_in.individual_token_refiner.blocks.0.mlp.fc2",
        None,
    ),
    "norm_out.linear": ("final_layer.adaLN_modulation.1", None),
}
# ComfyUI's module names for the official ones that differ (flux-style DoubleStreamBlock), as
# diffusion-pipe writes them: q, k and v fused into one qkv layer.
COMFY = {
    "img_mod.linear": "img_mod.lin",
    "txt_mod.linear": "txt_mod.lin",
    "img_attn_proj": "img_attn.proj",
    "txt_attn_proj": "txt_attn.proj",
    "img_mlp.fc1": "img_mlp.0",
    "img_mlp.fc2": "img_mlp.2",
    "txt_mlp.fc1": "txt_mlp.0",
    "txt_mlp.fc2": "txt_mlp.2",
    "blocks.0.mlp.fc2": "blocks.0.mlp.2",
}


def swap_halves(up: torch.Tensor) -> torch.Tensor:
    first, second = up.chunk(2)
    return torch.cat([second, first])


@pytest.fixture(scope="module")
def layers() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """diffusers' layer -> (down, up) of the LoRA every file below holds."""
    transformer = build_tiny_pipeline().transformer
    g = torch.Generator().manual_seed(21)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    shared: dict[str, torch.Tensor] = {}
    for name, (official, part) in OFFICIAL.items():
        module = transformer.get_submodule(name)
        fused = official.rsplit("_", 1)[0] if part is not None else None
        down = torch.randn(RANK, module.in_features, generator=g)
        if fused is not None:
            down = shared.setdefault(fused, down)
        out[name] = (down, torch.randn(module.out_features, RANK, generator=g) / 4)
    return out


def official_layers(
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]], fuse: bool
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The same LoRA under the official names, q, k and v fused into ``*_qkv`` if ``fuse``, the
    final modulation's halves in the official order."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, (official, part) in OFFICIAL.items():
        down, up = layers[name]
        if official.startswith("final_layer"):
            up = swap_halves(up)
        if fuse and part is not None:
            fused = official[:-1] + "qkv"
            ups = [layers[n][1] for n, (o, p) in OFFICIAL.items() if o[:-1] == official[:-1]]
            out[fused] = (down, torch.cat(ups))
        else:
            out[official] = (down, up)
    return out


def write(folder: Path, name: str, tensors: dict[str, torch.Tensor], **meta: Any) -> Path:
    path = folder / f"{name}.safetensors"
    metadata = {"lora_adapter_metadata": json.dumps(meta)} if meta else None
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, path, metadata=metadata)
    return path


@pytest.fixture(scope="module")
def lora_dir(
    tmp_path_factory: pytest.TempPathFactory, layers: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> Path:
    folder = tmp_path_factory.mktemp("loras15")
    # diffusers/PEFT: a pipeline's save_lora_weights layout, alpha in the header.
    peft = {}
    for name, (down, up) in layers.items():
        peft[f"transformer.{name}.lora_A.weight"] = down
        peft[f"transformer.{name}.lora_B.weight"] = up
    write(folder, "peft", peft, **{"transformer.r": RANK, "transformer.lora_alpha": ALPHA})
    # Tencent's train.py: PEFT on the official model, a model's save_lora_adapter header.
    tencent = {}
    for name, (down, up) in official_layers(layers, fuse=False).items():
        tencent[f"{name}.lora_A.weight"] = down
        tencent[f"{name}.lora_B.weight"] = up
    write(folder, "tencent", tencent, r=RANK, lora_alpha=ALPHA)
    # musubi-tuner: lora_unet_ + underscored official names, lora_down/lora_up/alpha.
    musubi = {}
    for name, (down, up) in official_layers(layers, fuse=False).items():
        key = "lora_unet_" + name.replace(".", "_")
        musubi[f"{key}.lora_down.weight"] = down
        musubi[f"{key}.lora_up.weight"] = up
        musubi[f"{key}.alpha"] = torch.tensor(ALPHA)
    write(folder, "musubi", musubi)
    # ComfyUI / diffusion-pipe: diffusion_model. + ComfyUI's names, q, k and v fused, and the
    # alpha folded into up (diffusion-pipe writes no alpha keys: PEFT's scale, alpha / rank,
    # is then 1).
    comfy = {}
    for name, (down, up) in official_layers(layers, fuse=True).items():
        for official, theirs in COMFY.items():
            name = name.replace(official, theirs)
        comfy[f"diffusion_model.{name}.lora_A.weight"] = down
        comfy[f"diffusion_model.{name}.lora_B.weight"] = up * (ALPHA / RANK)
    write(folder, "comfy", comfy)
    return folder


def forward(pipe: Any) -> torch.Tensor:
    with torch.inference_mode():
        out: torch.Tensor = pipe.transformer(**transformer15_inputs(pipe.transformer))[0]
    return out


def adapters(folder: Path, **settings: Any) -> LoraAdapters:
    return LoraAdapters(build_tiny_pipeline(), LoraSettings(folder, **settings))


def run(loras: LoraAdapters, *choices: tuple[str, float]) -> torch.Tensor:
    loras.use([LoraChoice(name, scale) for name, scale in choices])
    return forward(loras.pipe)


@pytest.fixture(scope="module")
def base() -> torch.Tensor:
    return forward(build_tiny_pipeline())


@pytest.mark.parametrize("layout", ["peft", "tencent", "musubi", "comfy"])
def test_each_layout_reads_into_the_diffusers_layers(
    lora_dir: Path, layers: dict[str, tuple[torch.Tensor, torch.Tensor]], layout: str
) -> None:
    from safetensors.torch import load_file

    from framecast.engines.hunyuan15.lora_formats import read_lora

    transformer = build_tiny_pipeline().transformer
    read = read_lora(lora_dir / f"{layout}.safetensors", transformer)
    assert read.keys() == layers.keys()
    for name, (down, up) in layers.items():
        assert torch.equal(read[name].down, down), name
        scale = read[name].alpha / read[name].rank
        torch.testing.assert_close(read[name].up * scale, up * (ALPHA / RANK), rtol=0, atol=1e-6)
    assert load_file(lora_dir / f"{layout}.safetensors")  # a real file, not only a header


def test_every_layout_gives_the_peft_files_output(lora_dir: Path, base: torch.Tensor) -> None:
    loras = adapters(lora_dir)
    reference = run(loras, ("peft", 0.7))
    assert not torch.allclose(reference, base, atol=1e-3)
    for layout in ("tencent", "musubi"):  # the same matrices and alpha: the same bits
        assert torch.equal(run(loras, (layout, 0.7)), reference), layout
    # The alpha folded into up rounds differently: equal to float32 rounding.
    torch.testing.assert_close(run(loras, ("comfy", 0.7)), reference, rtol=1e-5, atol=1e-6)
    assert torch.equal(run(loras), base)  # none: the base model to the bit


def test_musubi_alpha_0_means_the_rank_and_an_unknown_part_is_refused() -> None:
    transformer = build_tiny_pipeline().transformer
    down, up = torch.ones(2, 32), torch.ones(32, 2)
    key = "lora_unet_double_blocks_0_img_attn_proj"
    read = to_diffusers(
        {
            f"{key}.lora_down.weight": down,
            f"{key}.lora_up.weight": up,
            f"{key}.alpha": torch.tensor(0.0),
        },
        transformer,
    )
    assert list(read) == ["transformer_blocks.0.attn.to_out.0"]
    assert read["transformer_blocks.0.attn.to_out.0"].alpha == 2.0
    with pytest.raises(ValueError, match="LoKr, LoHa, DoRA"):
        to_diffusers({f"{key}.lokr_w1": down}, transformer)


def other_model_files(folder: Path) -> dict[str, str]:
    """name -> what the refusal must say."""
    from framecast.engines.hunyuan.tiny import build_tiny_pipeline as build_v1

    v1 = build_v1().transformer
    v1_keys = {}
    for name in ("transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_q"):
        module = v1.get_submodule(name)
        v1_keys[f"transformer.{name}.lora_A.weight"] = torch.zeros(2, module.in_features)
        v1_keys[f"transformer.{name}.lora_B.weight"] = torch.zeros(module.out_features, 2)
    write(folder, "hunyuan-v1", v1_keys)
    write(
        folder,
        "wan",
        {
            "diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(2, 32),
            "diffusion_model.blocks.0.self_attn.q.lora_B.weight": torch.zeros(32, 2),
        },
    )
    write(
        folder,
        "flux",
        {
            "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(2, 32),
            "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.zeros(96, 2),
            "lora_unet_single_blocks_0_linear1.lora_down.weight": torch.zeros(2, 32),
            "lora_unet_single_blocks_0_linear1.lora_up.weight": torch.zeros(160, 2),
        },
    )
    # The full-size 1.5 model's hidden size (2048): a LoRA for another size of this model.
    write(
        folder,
        "full-size",
        {
            "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(2, 2048),
            "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(2048, 2),
        },
    )
    write(
        folder,
        "sd",
        {
            "unet.down_blocks.0.attentions.0.to_q.lora_A.weight": torch.zeros(2, 32),
            "unet.down_blocks.0.attentions.0.to_q.lora_B.weight": torch.zeros(32, 2),
        },
    )
    return {
        "hunyuan-v1": "single-stream blocks.*HunyuanVideo \\(v1\\) or Flux",
        "flux": "single-stream blocks.*HunyuanVideo \\(v1\\) or Flux",
        "wan": "a Wan LoRA",
        "full-size": "maps 2048 to 2048 features.*another model \\(or another size\\)",
        "sd": "HunyuanVideo 1.5's transformer does not have.*another model",
    }


def test_another_models_lora_is_refused_with_the_reason(tmp_path: Path, base: torch.Tensor) -> None:
    reasons = other_model_files(tmp_path)
    loras = adapters(tmp_path)
    for name, reason in reasons.items():
        with pytest.raises(LoraError, match=f"LoRA '{name}' could not be loaded: .*{reason}"):
            loras.use([LoraChoice(name)])
    assert loras.loaded() == [] and not getattr(loras.transformer, "peft_config", {})
    assert torch.equal(run(loras), base)


def frames(engine: Hunyuan15Engine, *loras: LoraChoice) -> np.ndarray:
    request = generation_request(*loras)
    return np.stack(list(engine.generate(request, NullHooks())))


def generation_request(*loras: LoraChoice) -> GenerationRequest:
    return GenerationRequest(
        image=gradient_image(),
        prompt="waves roll in",
        seed=9,
        width=48,
        height=32,
        num_frames=5,
        fps=FPS,
        options={"num_inference_steps": 2, "loras": loras},
    )


def test_engine_applies_and_records_a_lora_and_none_is_the_base_model(lora_dir: Path) -> None:
    never = Hunyuan15Engine.load(resolve_model("tiny-random"), device="cpu")
    engine = Hunyuan15Engine.load(
        resolve_model("tiny-random"), device="cpu", loras=LoraSettings(lora_dir)
    )
    plain = frames(never)
    styled = frames(engine, LoraChoice("peft", 1.5))
    assert not np.array_equal(styled, plain)
    # Right after a request with a LoRA: bit for bit what an engine that never loaded one makes.
    np.testing.assert_array_equal(frames(engine), plain)
    sha = hashlib.sha256((lora_dir / "peft.safetensors").read_bytes()).hexdigest()
    described = engine.describe(generation_request(LoraChoice("peft", 1.5)))
    assert described["loras"] == [{"path": "peft", "scale": 1.5, "sha256": sha}]
    assert "loras" not in engine.describe(generation_request())


def test_compiled_blocks_switch_loras_without_recompiling(
    lora_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager = adapters(lora_dir)
    expected = {
        "peft": run(eager, ("peft", 1.0)),
        "musubi": run(eager, ("musubi", -0.5)),
        "both": run(eager, ("musubi", -0.5), ("comfy", 2.0)),
    }
    # aot_eager: dynamo's tracing and guards, which decide recompiles, without minutes of C++
    # compiling on a CPU (as the HunyuanVideo-I2V test, test_hunyuan_loras.py).
    monkeypatch.setattr(
        engine_module, "compile_blocks", functools.partial(compile_blocks, backend="aot_eager")
    )
    torch._dynamo.reset()
    engine = Hunyuan15Engine(
        FramecastHunyuan15Pipeline(**build_tiny_pipeline().components),
        model="tiny-random",
        placement=engine_module.Placement.choose("cpu", "none"),
        exact_speedups=False,  # diffusers' attention, as the eager reference above
        loras=LoraSettings(lora_dir, max_rank=RANK),
    )
    engine.compile()
    loras = engine.loras

    def close(actual: torch.Tensor, wanted: torch.Tensor) -> None:
        torch.testing.assert_close(actual, wanted, rtol=1e-5, atol=1e-5)

    plain = run(loras)  # one graph for no LoRA
    close(run(loras, ("peft", 1.0)), expected["peft"])  # one for one
    close(run(loras, ("comfy", 2.0), ("musubi", -0.5)), expected["both"])  # one for two
    with torch._dynamo.config.patch(error_on_recompile=True):
        close(run(loras, ("musubi", -0.5)), expected["musubi"])  # another LoRA, another scale
        assert torch.equal(run(loras), plain)
        close(run(loras, ("musubi", -0.5), ("comfy", 2.0)), expected["both"])
