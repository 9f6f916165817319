#!/usr/bin/env python3
"""Reference outputs of the real diffusers UNet2DModel for DiffusersCrossCheckTest.

Builds diffusers' UNet2DModel for a few small configurations, gives it random weights from a fixed
torch seed, runs a batch through it in float32 and in float64, and back-propagates sum(out * R) in
float64. Writes, per configuration, a directory under OUT (default src/library/src/test/resources/crosscheck):

  config.json                          diffusers' own model.to_json_string()
  diffusion_pytorch_model.safetensors  the float32 weights under diffusers' state-dict names (OIHW)
  reference.safetensors                x [N,C,H,W] f32, timesteps [N] f32, r [N,Cout,H,W] f32,
                                       out32 (diffusers float32), out64 (model.double()),
                                       grad64.x and grad64.<param> (d sum(out64 * r) / d ...), f64,
                                       grad32.* the same from diffusers' float32 model

plus legacy_<name>/ (the same weights under the pre-0.14 attention names query/key/value/proj_attn,
checked here to load in diffusers through its own _convert_deprecated_attention_blocks) and
ddpm-cifar10-32.json (google/ddpm-cifar10-32's configuration as diffusers writes it, diffusers'
parameter count and every state-dict tensor's shape).

float64 reference: diffusers computes the sinusoidal time projection in float32 even after
model.double() (get_timestep_embedding casts timesteps with .float()); out64 and grad64.* replace it
by the same formula in float64 (get_timestep_embedding_f64 below, checked against diffusers'
function in float32), so they are the network's exact value up to float64 rounding. The metadata
records how far diffusers' float32-projection double model is from that.

Requirements (nothing is downloaded): PyTorch (tested: Debian python3-torch 1.13.1, CPU) and a
diffusers source tree on PYTHONPATH whose UNet2DModel imports with that torch. Tested with diffusers
v0.31.0 (commit 89e4d6219805975bd7d253a267e1951badc9f1c0; newer releases need torch >= 2) and
huggingface_hub v0.26.5 sources, e.g.

  PYTHONPATH=/path/to/diffusers/src:/path/to/huggingface_hub/src python3 \
      benchmarks/crosscheck/diffusers_unet_reference.py [--out DIR]

diffusers imports the `safetensors` package at module load but this script never calls it (it
writes safetensors files itself with json + struct); if the package is not installed, a directory
with an import-time stand-in (safetensors/__init__.py defining safe_open, safetensors/torch.py
defining load_file/save_file) may be appended to PYTHONPATH.

The UNet2DModel code paths exercised here (UNet2DModel, DownBlock2D, AttnDownBlock2D,
UNetMidBlock2D, UpBlock2D, AttnUpBlock2D, ResnetBlock2D, Downsample2D, Upsample2D, Attention with
AttnProcessor, Timesteps/TimestepEmbedding) are, apart from gradient checkpointing and typing, the
same in v0.31.0 and diffusers main, with one exception: time_embedding_dim is honoured only since
diffusers 0.32, so every configuration here leaves it unset (4 * block_out_channels[0]).
"""

import argparse
import json
import math
import os
import struct
import sys

import torch

import diffusers
from diffusers import UNet2DModel
import diffusers.models.embeddings as dm_embeddings

SEED = 20240611

# Small configurations covering the supported architecture: every block type, odd channel counts
# with norm_num_groups dividing them (at least 2 channels per group: with one channel per group the
# GroupNorm after the time-embedding add cancels it, and its gradient vanishes), attention_head_dim set and None, attn_norm_num_groups,
# downsample_padding 0 and 1, flip_sin_to_cos both ways, freq_shift 0 and 1, an odd time projection
# width (zero-padded by diffusers), mid_block_scale_factor != 1, non-square inputs whose lowest level
# is odd-sized, a single-level network on an odd 5x7 input, in_channels 1 and 3.
CONFIGS = {
    "two_level_pad0": dict(
        config=dict(
            sample_size=[6, 10], in_channels=3, out_channels=2, layers_per_block=1,
            block_out_channels=[6, 10], down_block_types=["DownBlock2D", "AttnDownBlock2D"],
            up_block_types=["AttnUpBlock2D", "UpBlock2D"], norm_num_groups=2, attention_head_dim=None,
            downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6),
        batch=3, hw=(6, 10), timesteps=[0.0, 437.25, 999.0], grad=True),
    "three_level_heads": dict(
        config=dict(
            sample_size=[4, 12], in_channels=1, out_channels=1, layers_per_block=1,
            block_out_channels=[9, 6, 6],
            down_block_types=["AttnDownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
            up_block_types=["AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D"], norm_num_groups=3,
            attention_head_dim=3, attn_norm_num_groups=2, downsample_padding=1, flip_sin_to_cos=True,
            freq_shift=0, mid_block_scale_factor=1.5, norm_eps=1e-5),
        batch=2, hw=(4, 12), timesteps=[17.0, 999.5], grad=True),
    "one_level_odd": dict(
        config=dict(
            sample_size=[5, 7], in_channels=3, out_channels=3, layers_per_block=2,
            block_out_channels=[4], down_block_types=["AttnDownBlock2D"], up_block_types=["AttnUpBlock2D"],
            norm_num_groups=2, attention_head_dim=2, downsample_padding=1, flip_sin_to_cos=True,
            freq_shift=1, norm_eps=1e-5),
        batch=2, hw=(5, 7), timesteps=[3.0, 250.75], grad=False),
}
LEGACY_OF = "one_level_odd"

# google/ddpm-cifar10-32's config.json (the network-defining keys; see the test for the sources).
DDPM_CIFAR10_32 = dict(
    sample_size=32, in_channels=3, out_channels=3, center_input_sample=False,
    time_embedding_type="positional", freq_shift=1, flip_sin_to_cos=False,
    down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    block_out_channels=[128, 256, 256, 256], layers_per_block=2, mid_block_scale_factor=1,
    downsample_padding=0, act_fn="silu", attention_head_dim=None, norm_num_groups=32, norm_eps=1e-6)
DDPM_CIFAR10_32_PARAMS = 35_746_307

# parameter gradients saved per fixture (when present in the configuration): one of every kind
GRAD_PARAMS = [
    "conv_in.weight", "conv_in.bias",
    "time_embedding.linear_1.weight", "time_embedding.linear_2.bias",
    "down_blocks.0.resnets.0.norm1.weight", "down_blocks.0.resnets.0.time_emb_proj.weight",
    "down_blocks.0.downsamplers.0.conv.weight",
    "down_blocks.1.resnets.0.conv_shortcut.weight", "down_blocks.1.resnets.0.norm2.bias",
    "down_blocks.1.attentions.0.to_q.weight", "down_blocks.1.attentions.0.to_k.bias",
    "down_blocks.0.attentions.0.to_v.weight", "down_blocks.0.attentions.0.group_norm.weight",
    "mid_block.attentions.0.to_out.0.weight", "mid_block.attentions.0.group_norm.bias",
    "mid_block.resnets.1.conv2.weight",
    "up_blocks.0.resnets.0.conv1.weight", "up_blocks.0.attentions.1.to_k.weight",
    "up_blocks.0.upsamplers.0.conv.weight", "up_blocks.1.resnets.1.conv_shortcut.bias",
    "conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias",
]

LEGACY_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


# ------------------------------------------------------------------------------------------------
# safetensors writer (https://github.com/huggingface/safetensors: u64 little-endian header length,
# JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the data)

def write_safetensors(path, tensors, metadata=None):
    header = {}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        dtype = {torch.float32: "F32", torch.float64: "F64"}[t.dtype]
        data = t.numpy().astype("<f4" if dtype == "F32" else "<f8").tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ------------------------------------------------------------------------------------------------
# the float64 time projection

def get_timestep_embedding_f64(timesteps, embedding_dim, flip_sin_to_cos=False, downscale_freq_shift=1,
                               scale=1, max_period=10000, dtype=torch.float64):
    """diffusers.models.embeddings.get_timestep_embedding with every step in `dtype`."""
    assert len(timesteps.shape) == 1
    half_dim = embedding_dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half_dim, dtype=dtype)
    exponent = exponent / (half_dim - downscale_freq_shift)
    emb = timesteps[:, None].to(dtype) * torch.exp(exponent)[None, :]
    emb = scale * emb
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half_dim:], emb[:, :half_dim]], dim=-1)
    if embedding_dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1, 0, 0))
    return emb


ORIGINAL_GTE = dm_embeddings.get_timestep_embedding
ORIGINAL_BADDBMM = torch.baddbmm


def baddbmm_beta0_ignores_input(input, batch1, batch2, *, beta=1, alpha=1, out=None):
    """torch.baddbmm as documented: with beta = 0 the input is ignored (NaN in it not propagated).

    diffusers' AttnProcessor computes the attention logits as baddbmm(torch.empty(...), q, k^T,
    beta=0, alpha=scale); Debian's torch 1.13.1 CPU build propagates NaN from the uninitialised
    input in that case (measured: about 19 of 20 calls with a NaN-filled input), which made
    diffusers' float32 output NaN depending on what the allocator returned.
    """
    if beta == 0 and out is None:
        return alpha * torch.bmm(batch1, batch2)
    return ORIGINAL_BADDBMM(input, batch1, batch2, beta=beta, alpha=alpha, out=out)


def check_f64_formula():
    """The float64 projection is diffusers' formula: evaluated in float32 it reproduces diffusers exactly."""
    t = torch.tensor([0.0, 1.0, 17.0, 437.25, 999.0, 999.5])
    for dim in (4, 5, 6, 9, 128):
        for flip in (False, True):
            for shift in (0, 1):
                ref = ORIGINAL_GTE(t, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift)
                mine = get_timestep_embedding_f64(t, dim, flip, shift, dtype=torch.float32)
                assert torch.equal(ref, mine), (dim, flip, shift)


def run(model, x, t, f64_projection):
    if f64_projection:
        dm_embeddings.get_timestep_embedding = get_timestep_embedding_f64
    torch.baddbmm = baddbmm_beta0_ignores_input
    try:
        y = model(x, t).sample
    finally:
        dm_embeddings.get_timestep_embedding = ORIGINAL_GTE
        torch.baddbmm = ORIGINAL_BADDBMM
    assert torch.isfinite(y).all(), "non-finite diffusers output"
    return y


# ------------------------------------------------------------------------------------------------

def randomize(model, gen):
    """PyTorch's default init for convolutions/linear layers (already done by the constructor),
    random GroupNorm affine parameters (not 1/0) and sharper attention logits (q, k scaled by 3)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".norm" in name or "group_norm" in name or name.startswith("conv_norm_out"):
                if name.endswith("weight"):
                    p.copy_(0.5 + torch.rand(p.shape, generator=gen))
                else:
                    p.copy_(torch.rand(p.shape, generator=gen) - 0.5)
            elif (".to_q." in name or ".to_k." in name) and name.endswith("weight"):
                p.mul_(3.0)


def fixture(out_dir, name, spec):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED + 1)
    model = UNet2DModel(**spec["config"]).eval()
    randomize(model, gen)
    cfg = model.config
    n = spec["batch"]
    h, w = spec["hw"]
    x = torch.randn(n, cfg.in_channels, h, w, generator=gen)
    t = torch.tensor(spec["timesteps"], dtype=torch.float32)
    r = torch.randn(n, cfg.out_channels, h, w, generator=gen)

    with torch.no_grad():
        out32 = run(model, x, t, False)
    state32 = {k: v.detach().clone() for k, v in model.state_dict().items()}

    x32 = x.clone().requires_grad_(True)
    loss32 = (run(model, x32, t, False) * r).sum()
    loss32.backward()
    grads32 = {"x": x32.grad.clone()}
    grads32.update({k: p.grad.clone() for k, p in model.named_parameters()})
    model.zero_grad(set_to_none=True)

    m64 = model.double()
    with torch.no_grad():
        out64_diffusers_projection = run(m64, x.double(), t, False)
    x64 = x.double().requires_grad_(True)
    out64 = run(m64, x64, t, True)
    loss = (out64 * r.double()).sum()
    loss.backward()

    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(model.to_json_string())
    meta = {
        "generator": "benchmarks/crosscheck/diffusers_unet_reference.py",
        "diffusers_version": diffusers.__version__, "torch_version": torch.__version__, "seed": SEED,
        "max_abs_out32_minus_out64": float((out32.double() - out64.detach()).abs().max()),
        "max_abs_out64_float32_projection_minus_out64":
            float((out64_diffusers_projection - out64.detach()).abs().max()),
    }
    write_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"), state32,
                      {"format": "pt", "generator": meta["generator"]})
    ref = {"x": x, "timesteps": t, "r": r, "out32": out32, "out64": out64.detach()}
    grads = []
    if spec["grad"]:
        ref["grad64.x"] = x64.grad
        ref["grad32.x"] = grads32["x"]
        params = dict(m64.named_parameters())
        for p in GRAD_PARAMS:
            if p in params:
                g = params[p].grad
                # a gradient that vanishes by symmetry would test nothing (to_k biases: softmax
                # is invariant to a per-query constant, kept as a check that ours vanishes too)
                assert p.endswith(".to_k.bias") or float(g.abs().max()) > 1e-9, p
                ref["grad64." + p] = g
                ref["grad32." + p] = grads32[p]
                grads.append(p)
    meta["grad_params"] = ",".join(grads)
    write_safetensors(os.path.join(d, "reference.safetensors"), ref, meta)
    nparams = sum(v.numel() for v in state32.values())
    print(f"{name}: {nparams} parameters, out max|.| {float(out64.abs().max()):.3g}, "
          f"diffusers f32 vs f64 max err {meta['max_abs_out32_minus_out64']:.3g}, "
          f"f32-projection double vs f64 {meta['max_abs_out64_float32_projection_minus_out64']:.3g}, "
          f"{len(grads)} parameter gradients")
    return model, state32, x, t, out32


def legacy_fixture(out_dir, name, state32, x, t, out32):
    """The same weights under pre-0.14 attention names; diffusers itself must load them identically."""
    legacy = {}
    for k, v in state32.items():
        parts = k.split(".")
        if "attentions" in parts:
            for cur, old in LEGACY_NAMES.items():
                marker = ".attentions." + parts[parts.index("attentions") + 1] + "." + cur + "."
                if marker in k:
                    k = k.replace(marker, marker[: -len(cur) - 1] + old + ".")
                    break
        legacy[k] = v
    assert any(".query." in k for k in legacy) and any(".proj_attn." in k for k in legacy)
    torch.manual_seed(0)
    spec = CONFIGS[name]
    m = UNet2DModel(**spec["config"]).eval()
    converted = dict(legacy)
    m._convert_deprecated_attention_blocks(converted)
    m.load_state_dict(converted, strict=True)
    with torch.no_grad():
        again = run(m, x, t, False)
    assert torch.equal(again, out32), "diffusers' own legacy-name conversion gives a different model"
    d = os.path.join(out_dir, "legacy_" + name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(m.to_json_string())
    write_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"), legacy,
                      {"format": "pt", "legacy_attention_names_of": name})
    print(f"legacy_{name}: {sum(1 for k in legacy if k not in state32)} renamed tensors; diffusers loads them "
          f"to the identical output")


def cifar(out_dir):
    torch.manual_seed(0)
    m = UNet2DModel(**DDPM_CIFAR10_32)
    count = sum(p.numel() for p in m.parameters())
    print(f"google/ddpm-cifar10-32 in diffusers {diffusers.__version__}: {count} parameters")
    assert count == DDPM_CIFAR10_32_PARAMS, count
    doc = {
        "config": json.loads(m.to_json_string()),
        "diffusers_version": diffusers.__version__,
        "parameter_count": count,
        "state_dict_shapes": {k: list(v.shape) for k, v in m.state_dict().items()},
    }
    with open(os.path.join(out_dir, "ddpm-cifar10-32.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="src/library/src/test/resources/crosscheck")
    args = ap.parse_args()
    torch.set_num_threads(1)
    check_f64_formula()
    os.makedirs(args.out, exist_ok=True)
    for name, spec in CONFIGS.items():
        model, state32, x, t, out32 = fixture(args.out, name, spec)
        if name == LEGACY_OF:
            legacy_fixture(args.out, name, state32, x, t, out32)
    cifar(args.out)
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump({"fixtures": list(CONFIGS), "legacy": {"legacy_" + LEGACY_OF: LEGACY_OF},
                   "diffusers_version": diffusers.__version__, "torch_version": torch.__version__}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
