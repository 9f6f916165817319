"""Exports a diffusers UNet2DModel folder (a diffusion4j checkpoint: config.json + diffusion_pytorch_model.safetensors)
to ONNX and TorchScript from the same weights, for comparing diffusion4j with ONNX Runtime and with PyTorch through
DJL in one JVM (measurement only, never part of the library).

    python3 export.py MODEL_DIR OUT_DIR [--batch N]

Writes OUT_DIR/unet.onnx (opset 17, batch dimension dynamic) and OUT_DIR/unet.pt (torch.jit.trace at batch N, default
1), both taking (sample float32 [N, C, H, W], timestep float32 [N]) and returning the model output [N, C, H, W], plus
OUT_DIR/reference.npz with one random input, its timesteps and PyTorch's float32 output, which a runner compares
against before timing anything. The model is benchmarks/torch/unet2d.py, the PyTorch UNet2DModel that
benchmarks/torch/validate.py checks against diffusers. Needs Debian's python3-torch (1.13; no onnx package: the
exporter serialises the graph itself) and numpy."""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "torch"))
import safetensors_io  # noqa: E402
import unet2d  # noqa: E402


def load(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    if config.get("num_class_embeds") is not None:
        raise SystemExit(f"{model_dir}: a class-conditional model; the comparison takes unconditional models")
    keys = {k: v for k, v in config.items() if not k.startswith("_")}
    model = unet2d.UNet2DModel(**keys)
    state, _ = safetensors_io.read(os.path.join(model_dir, "diffusion_pytorch_model.safetensors"))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return model.eval(), keys


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("out_dir")
    p.add_argument("--batch", type=int, default=1)
    a = p.parse_args(argv)
    model, cfg = load(a.model_dir)
    size = cfg["sample_size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    c = cfg.get("in_channels", 3)
    os.makedirs(a.out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, c, h, w, generator=g)
    t = torch.randint(0, 1000, (a.batch,), generator=g).float()
    with torch.no_grad():
        ref = model(x, t)
        torch.onnx.export(model, (x, t), os.path.join(a.out_dir, "unet.onnx"), opset_version=17,
                          input_names=["sample", "timestep"], output_names=["out"],
                          dynamic_axes={"sample": {0: "batch"}, "timestep": {0: "batch"}, "out": {0: "batch"}})
        traced = torch.jit.trace(model, (x, t))
        traced.save(os.path.join(a.out_dir, "unet.pt"))
    np.savez(os.path.join(a.out_dir, "reference.npz"), sample=x.numpy(), timestep=t.numpy(), out=ref.numpy())
    print(f"export: {a.out_dir}/unet.onnx, unet.pt, reference.npz ({a.batch}x{c}x{h}x{w}, torch {torch.__version__})")


if __name__ == "__main__":
    main(sys.argv[1:])
