#!/usr/bin/env python3
"""Checks that benchmarks/torch/unet2d.py is diffusers' UNet2DModel, so the speed comparison times the same network.

1. Against the committed fixtures written by the real diffusers v0.31.0 (src/library/src/test/resources/crosscheck/<name>/,
   see benchmarks/crosscheck/diffusers_unet_reference.py): the weights load under diffusers' state-dict names
   with strict=True (same names, same shapes, nothing missing or extra), and
   - float64 (time projection in float64, as the fixture's out64/grad64): output and the gradients of
     sum(out * r) w.r.t. x and the saved parameters equal diffusers' to float64 rounding (relative 1e-9);
   - float32 (diffusers' float32 time projection): output and gradients equal diffusers' float32 ones within
     float32 rounding (|mine - diffusers| <= 1e-5 * max|reference| + 2 * diffusers' own float32 error).
2. google/ddpm-cifar10-32: every state-dict name and shape equals the list diffusers wrote
   (src/library/src/test/resources/crosscheck/ddpm-cifar10-32.json) and the parameter count is 35,746,307.
3. The Fashion-MNIST configuration of the comparison has 1,112,801 parameters.
   benchmarks/torch/flops.py's analytic FLOP count equals the count from the layers' actual shapes (forward
   hooks on every Conv2d, Linear and Attention) for every configuration here.
4. If diffusers is importable (PYTHONPATH with a diffusers source tree, e.g. the one named in
   diffusers_unet_reference.py), every configuration above is also built in diffusers, given this module's
   weights (load_state_dict strict) and run on a fresh random input in float64: outputs and gradients must agree.

Exits non-zero with a message naming the first mismatch. Usage:
  python3 benchmarks/torch/validate.py [--fixtures DIR] [--require-diffusers]
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import configs  # noqa: E402
import flops  # noqa: E402
import safetensors_io  # noqa: E402
import unet2d  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_FIXTURES = os.path.join(REPO, "src", "library", "src", "test", "resources", "crosscheck")


class Mismatch(AssertionError):
    pass


def close(name, mine, ref, atol, rtol=0.0):
    """|mine - ref| <= atol + rtol * |ref| elementwise; returns the max abs error."""
    mine = np.asarray(mine, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if mine.shape != ref.shape:
        raise Mismatch(f"{name}: shape {mine.shape} != reference {ref.shape}")
    if not np.all(np.isfinite(mine)):
        raise Mismatch(f"{name}: non-finite values")
    err = np.abs(mine - ref)
    bound = atol + rtol * np.abs(ref)
    if np.any(err > bound):
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise Mismatch(f"{name}: worst element {i}: {mine[i]!r} vs reference {ref[i]!r}, |err| {err[i]:.3g} > "
                       f"bound {bound[i]:.3g} (max |err| {err.max():.3g})")
    return float(err.max())


def load_model(config, state, dtype):
    model = unet2d.UNet2DModel(**config)
    sd = {k: torch.from_numpy(v) for k, v in state.items()}
    missing = sorted(set(model.state_dict()) - set(sd))
    extra = sorted(set(sd) - set(model.state_dict()))
    if missing or extra:
        raise Mismatch(f"state-dict names differ from diffusers': missing {missing[:5]}, unexpected {extra[:5]}")
    for k, v in model.state_dict().items():
        if tuple(v.shape) != tuple(sd[k].shape):
            raise Mismatch(f"{k}: shape {tuple(v.shape)} here, {tuple(sd[k].shape)} in diffusers")
    model.load_state_dict(sd, strict=True)
    model = model.to(dtype).eval()
    if dtype == torch.float64:
        model.set_time_projection_dtype(torch.float64)
    return model


def forward_backward(model, x, t, r, dtype):
    x = torch.from_numpy(x).to(dtype).requires_grad_(True)
    t = torch.from_numpy(t)
    model.zero_grad(set_to_none=True)
    out = model(x, t)
    (out * torch.from_numpy(r).to(dtype)).sum().backward()
    grads = {"x": x.grad.detach().numpy()}
    grads.update({k: p.grad.detach().numpy() for k, p in model.named_parameters() if p.grad is not None})
    return out.detach().numpy(), grads


def check_fixture(fixtures, name, log):
    d = os.path.join(fixtures, name)
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    state, _ = safetensors_io.read(os.path.join(d, "diffusion_pytorch_model.safetensors"))
    ref, meta = safetensors_io.read(os.path.join(d, "reference.safetensors"))
    x, t, r = ref["x"], ref["timesteps"], ref["r"]
    grad_names = ["x"] + [p for p in meta.get("grad_params", "").split(",") if p]
    has_grads = "grad64.x" in ref

    m64 = load_model(config, state, torch.float64)
    out64, g64 = forward_backward(m64, x, t, r, torch.float64)
    scale = float(np.abs(ref["out64"]).max())
    e64 = close(f"{name} out (float64)", out64, ref["out64"], 1e-9 * scale, 1e-9)
    worst_g64 = 0.0
    if has_grads:
        for p in grad_names:
            g = ref["grad64." + p]
            gs = max(float(np.abs(g).max()), 1e-30)
            worst_g64 = max(worst_g64, close(f"{name} grad {p} (float64)", g64[p], g, 1e-9 * gs, 1e-9) / gs)

    # float32: the error against the float64 truth must be of the size of diffusers' own float32 error (4x
    # margin: other thread counts / SIMD paths round differently); bitwise equality is reported, not required
    m32 = load_model(config, state, torch.float32)
    out32, g32 = forward_backward(m32, x, t, r, torch.float32)
    own = float(np.abs(ref["out32"].astype(np.float64) - ref["out64"]).max())  # diffusers' own float32 error
    e32 = close(f"{name} out (float32, error vs float64 truth)", out32, ref["out64"], 4 * own + 1e-7 * scale)
    bitwise = np.array_equal(out32, ref["out32"])
    worst_g32 = 0.0
    if has_grads:
        for p in grad_names:
            g, g_d32 = ref["grad64." + p], ref["grad32." + p]
            gs = max(float(np.abs(g).max()), 1e-30)
            own_g = float(np.abs(g_d32.astype(np.float64) - g).max())
            worst_g32 = max(worst_g32, close(f"{name} grad {p} (float32, error vs float64 truth)", g32[p], g,
                                             4 * own_g + 1e-7 * gs) / max(own_g, 1e-30))
            bitwise = bitwise and np.array_equal(g32[p], g_d32)
    log(f"  {name}: {unet2d.parameter_count(m32)} params; float64 out max|err| {e64:.2e} (|out| <= {scale:.3g})"
        + (f", grads max rel {worst_g64:.1e}" if has_grads else "")
        + f"; float32 out max|err| {e32:.2e} (diffusers' float32: {own:.2e})"
        + (f", grads max error {worst_g32:.2f}x diffusers' float32 one ({len(grad_names)} tensors)" if has_grads else "")
        + ("; float32 bitwise equal to diffusers'" if bitwise else "; float32 not bitwise equal to diffusers'"))
    return config


def check_cifar(fixtures, log):
    with open(os.path.join(fixtures, "ddpm-cifar10-32.json")) as f:
        doc = json.load(f)
    model = unet2d.UNet2DModel(**doc["config"])
    mine = {k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = doc["state_dict_shapes"]
    if list(mine) != list(theirs):
        diff = [k for k in list(mine) + list(theirs) if (k in mine) != (k in theirs)]
        raise Mismatch(f"ddpm-cifar10-32 state-dict names differ from diffusers' (order or set): {diff[:6]}")
    for k in mine:
        if mine[k] != theirs[k]:
            raise Mismatch(f"ddpm-cifar10-32 {k}: shape {mine[k]} here, {theirs[k]} in diffusers")
    n = unet2d.parameter_count(model)
    if n != doc["parameter_count"] or n != configs.PARAMS["cifar10"]:
        raise Mismatch(f"ddpm-cifar10-32 has {n} parameters here, diffusers {doc['parameter_count']}")
    log(f"  ddpm-cifar10-32: {len(mine)} state-dict tensors with diffusers' names and shapes, {n} parameters")


def check_fashion(log):
    model = unet2d.UNet2DModel(**configs.fashion_config())
    n = unet2d.parameter_count(model)
    if n != configs.PARAMS["fashion"]:
        raise Mismatch(f"the Fashion-MNIST configuration has {n} parameters, expected {configs.PARAMS['fashion']}")
    log(f"  fashion (32/64/64): {n} parameters")


def counted_flops(model, x, t):
    """FLOPs of a forward pass counted from the tensors the layers actually see (hooks), to check flops.py."""
    total = [0]

    def conv(m, inp, out):
        total[0] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, inp, out):
        total[0] += 2 * out.numel() * m.in_features

    def attention(m, inp, out):
        b, c, h, w = inp[0].shape
        total[0] += 2 * 2 * b * (h * w) ** 2 * c  # Q K^T and P V

    hooks = []
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv))
        elif isinstance(mod, torch.nn.Linear):
            hooks.append(mod.register_forward_hook(linear))
        elif isinstance(mod, unet2d.Attention):
            hooks.append(mod.register_forward_hook(attention))
    try:
        with torch.no_grad():
            model(x, t)
    finally:
        for h in hooks:
            h.remove()
    return total[0]


def check_flops(named_configs, log):
    """flops.forward_flops (the analytic count of the comparison) equals the count from the layers' real shapes."""
    for name, (config, n, hw) in named_configs.items():
        model = unet2d.UNet2DModel(**config).eval()
        x = torch.zeros(n, config.get("in_channels", 3), hw[0], hw[1])
        got = counted_flops(model, x, torch.zeros(n))
        want = flops.forward_flops(config, n, hw[0], hw[1])
        if got != want:
            raise Mismatch(f"flops.py counts {want} FLOPs for {name} (batch {n}, {hw[0]}x{hw[1]}), the layers "
                           f"compute {got}")
        log(f"  flops.py: {name} batch {n} {hw[0]}x{hw[1]}: {want / 1e9:.4f} GFLOP per forward, equal to the count "
            f"from the layers' shapes")


def check_against_diffusers(configs_to_check, log):
    """Builds each config in the real diffusers, copies this module's weights in, compares in float64."""
    import diffusers
    from diffusers import UNet2DModel as DUNet

    orig_baddbmm = torch.baddbmm

    def baddbmm_beta0(input, b1, b2, *, beta=1, alpha=1, out=None):  # see diffusers_unet_reference.py
        if beta == 0 and out is None:
            return alpha * torch.bmm(b1, b2)
        return orig_baddbmm(input, b1, b2, beta=beta, alpha=alpha, out=out)

    gen = torch.Generator().manual_seed(1234)
    torch.baddbmm = baddbmm_beta0
    try:
        for name, (config, n, hw) in configs_to_check.items():
            torch.manual_seed(7)
            mine = unet2d.UNet2DModel(**config)
            with torch.no_grad():  # non-trivial norms so every parameter matters
                for k, p in mine.named_parameters():
                    if "norm" in k:
                        p.copy_(torch.rand(p.shape, generator=gen) + 0.5 if k.endswith("weight")
                                else torch.rand(p.shape, generator=gen) - 0.5)
            cfg = {k: v for k, v in config.items() if k not in unet2d.INFORMATIONAL}
            theirs = DUNet(**cfg)
            theirs.load_state_dict(mine.state_dict(), strict=True)
            mine, theirs = mine.double().eval(), theirs.double().eval()
            x = torch.randn(n, config.get("in_channels", 3), hw[0], hw[1], generator=gen, dtype=torch.float64)
            t = torch.rand(n, generator=gen, dtype=torch.float64) * 999
            r = torch.randn(n, config.get("out_channels", 3), hw[0], hw[1], generator=gen, dtype=torch.float64)
            outs, grads = [], []
            for m, f in ((mine, lambda m, x: m(x, t)), (theirs, lambda m, x: m(x, t).sample)):
                xx = x.clone().requires_grad_(True)
                y = f(m, xx)
                (y * r).sum().backward()
                outs.append(y.detach().numpy())
                grads.append({"x": xx.grad.numpy(), **{k: p.grad.numpy() for k, p in m.named_parameters()}})
            # both compute the time projection in float32 (diffusers' .float()): same rounding on both sides
            s = float(np.abs(outs[1]).max())
            e = close(f"{name} vs diffusers out", outs[0], outs[1], 1e-9 * s, 1e-9)
            worst = 0.0
            for k in grads[1]:
                gs = max(float(np.abs(grads[1][k]).max()), 1e-30)
                worst = max(worst, close(f"{name} vs diffusers grad {k}", grads[0][k], grads[1][k], 1e-9 * gs, 1e-9) / gs)
            log(f"  {name} vs diffusers {diffusers.__version__} (float64, batch {n}, {hw[0]}x{hw[1]}): out max|err| "
                f"{e:.1e}, {len(grads[1])} gradients max rel {worst:.1e}")
    finally:
        torch.baddbmm = orig_baddbmm


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixtures", default=DEFAULT_FIXTURES)
    ap.add_argument("--require-diffusers", action="store_true",
                    help="fail if diffusers cannot be imported (default: that check is skipped with a note)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    log = (lambda s: None) if args.quiet else print
    with open(os.path.join(args.fixtures, "index.json")) as f:
        names = json.load(f)["fixtures"]
    if not names:
        raise Mismatch("no fixtures listed in index.json")
    log(f"unet2d.py vs diffusers fixtures in {os.path.relpath(args.fixtures, REPO)}:")
    fixture_configs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the fixtures were written with one thread: then float32 is bitwise reproducible
    try:
        for name in names:
            cfg = check_fixture(args.fixtures, name, log)
            ref, _ = safetensors_io.read(os.path.join(args.fixtures, name, "reference.safetensors"))
            fixture_configs[name] = (cfg, 2, ref["x"].shape[2:])
        check_cifar(args.fixtures, log)
        check_fashion(log)
        check_flops(dict(fixture_configs, fashion=(configs.fashion_config(), 2, (28, 28)),
                         cifar10=(configs.cifar10_config(), 1, (32, 32))), log)
        try:
            import diffusers  # noqa: F401
        except Exception as e:  # ImportError, or a diffusers that does not import with this torch
            if args.require_diffusers:
                raise Mismatch(f"--require-diffusers: diffusers does not import: {e}")
            log(f"  real diffusers not importable ({type(e).__name__}); that direct check skipped "
                f"(set PYTHONPATH to a diffusers source tree to run it)")
        else:
            fixture_configs["fashion"] = (configs.fashion_config(), 2, (28, 28))
            fixture_configs["cifar10"] = (configs.cifar10_config(), 1, (32, 32))
            check_against_diffusers(fixture_configs, log)
    except Mismatch as e:
        print(f"VALIDATION FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)
    log("validation passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
