#!/usr/bin/env python3
"""Reference sampling trajectories of diffusers' real schedulers for DiffusersSamplerCrossCheckTest.

Takes one of the committed model fixtures of diffusers_unet_reference.py (default
src/library/src/test/resources/crosscheck/one_level_odd: diffusers' config.json and its float32 weights), draws an
x_T from a fixed torch seed and runs diffusers' own denoising loop

    scheduler.set_timesteps(n)
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t).sample, t, x).prev_sample

for each case of CASES below (DDIMScheduler with eta 0 over timestep_spacing leading / trailing /
linspace, set_alpha_to_one true and false, clip_sample on and off, dynamic thresholding, prediction
types epsilon / v_prediction / sample; DPMSolverMultistepScheduler dpmsolver++ order 2 with
lower_order_final and final_sigmas_type zero, with and without thresholding). The prediction type only
changes how the scheduler reads the model output, so the same weights serve every case.

Every case is run twice:
  run32  what diffusers computes: float32 model, diffusers' float32 alphas_cumprod / sigmas;
  run64  the same loop in float64: model.double() with the time projection in float64 (as in
         diffusers_unet_reference.py), alphas_cumprod = cumprod(1 - linspace(...)) in float64, DPM-Solver's
         sigmas recomputed in float64 (checked to round to diffusers' float32 ones) and its float32 upcast
         of the sample turned into a float64 one.
|run32 - run64| measures how far float32 rounding (mostly diffusers' float32 alphas_cumprod, amplified
by 1/sqrt(alphas_cumprod) at large t) moves diffusers' own result; the Java test allows a multiple of it.

DDPM: DDPMScheduler.step draws its variance noise with randn_tensor, so instead of whole runs this
records single steps (fixed_small and fixed_large, clipped or not, with thresholding, all prediction
types, several (t, prev_t) of set_timesteps(n)) with the noise replaced (patching the module's
randn_tensor) by 0 and by 1: diffusers' x_{t-1} = mean + std * noise, so those two runs give the mean and
std with which any noise z, e.g. our Philox noise, yields diffusers' x_{t-1}.

Writes OUT/sampler/ (OUT default src/library/src/test/resources/crosscheck):
  cases.json              per case: name, kind (ddim | dpmsolver | ddpm), diffusers' scheduler config as
                          written by scheduler.to_json_string(), num_inference_steps, the timesteps list
                          (and per DDPM step t, prev_t), the model fixture used
  reference.safetensors   x_T [N,C,H,W] f32; per case "<name>.x32.<i>" / "<name>.x64.<i>" the sample after
                          step i (f32 / f64); per DDPM case "<name>.xt", ".model_output" (f32, diffusers'
                          float32 unet at t), ".mean32", ".std32" (f32), ".mean64", ".std64" (f64)

Requirements (nothing is downloaded): PyTorch (tested: Debian python3-torch 1.13.1, CPU), numpy and a
diffusers source tree on PYTHONPATH whose UNet2DModel and schedulers import with that torch. Tested with
diffusers v0.31.0 (commit 89e4d6219805975bd7d253a267e1951badc9f1c0) and huggingface_hub v0.26.5 sources:

  PYTHONPATH=/path/to/diffusers/src:/path/to/huggingface_hub/src[:/path/to/safetensors-stub] python3 \\
      benchmarks/crosscheck/diffusers_sampler_reference.py [--model DIR] [--out DIR]

The safetensors package is not needed (see diffusers_unet_reference.py for the import-time stand-in);
this script reads and writes safetensors files itself.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_unet_reference as unet_ref  # noqa: E402  (diffusers' f64 time projection, baddbmm fix, writer)

import diffusers  # noqa: E402
import diffusers.schedulers.scheduling_ddpm as ddpm_module  # noqa: E402
import diffusers.schedulers.scheduling_dpmsolver_multistep as dpm_module  # noqa: E402
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel  # noqa: E402

SEED = 20240905
N_IMAGES = 2
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
TH = dict(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=2.5)

# name -> (kind, scheduler kwargs beyond SCHEDULE, num_inference_steps)
CASES = {
    "ddim_leading_eps_one": ("ddim", dict(timestep_spacing="leading", set_alpha_to_one=True, clip_sample=False,
                                          prediction_type="epsilon"), 5),
    "ddim_leading_offset1_sample": ("ddim", dict(timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False,
                                                 clip_sample=False, prediction_type="sample"), 4),
    "ddim_trailing_eps_clip": ("ddim", dict(timestep_spacing="trailing", set_alpha_to_one=False, clip_sample=True,
                                            prediction_type="epsilon"), 5),
    "ddim_trailing_v": ("ddim", dict(timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False,
                                     prediction_type="v_prediction"), 6),
    "ddim_linspace_v_clip15": ("ddim", dict(timestep_spacing="linspace", set_alpha_to_one=True, clip_sample=True,
                                            clip_sample_range=1.5, prediction_type="v_prediction"), 5),
    "ddim_linspace_sample_noalpha1": ("ddim", dict(timestep_spacing="linspace", set_alpha_to_one=False,
                                                   clip_sample=False, prediction_type="sample"), 3),
    "ddim_trailing_eps_threshold": ("ddim", dict(timestep_spacing="trailing", set_alpha_to_one=True,
                                                 clip_sample=False, prediction_type="epsilon", **TH), 5),
    "ddim_leading_v_threshold": ("ddim", dict(timestep_spacing="leading", set_alpha_to_one=False, clip_sample=True,
                                              prediction_type="v_prediction", **TH), 4),
    "dpm_linspace_eps": ("dpmsolver", dict(algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True,
                                          final_sigmas_type="zero", prediction_type="epsilon"), 6),
    "dpm_leading_v": ("dpmsolver", dict(algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True,
                                       final_sigmas_type="zero", timestep_spacing="leading",
                                       prediction_type="v_prediction"), 5),
    "dpm_trailing_sample": ("dpmsolver", dict(algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True,
                                             final_sigmas_type="zero", timestep_spacing="trailing",
                                             prediction_type="sample"), 4),
    "dpm_linspace_eps_threshold": ("dpmsolver", dict(algorithm_type="dpmsolver++", solver_order=2,
                                                    lower_order_final=True, final_sigmas_type="zero",
                                                    prediction_type="epsilon", **TH), 5),
    "ddpm_small_eps_clip": ("ddpm", dict(variance_type="fixed_small", clip_sample=True, prediction_type="epsilon"), 10),
    "ddpm_large_v": ("ddpm", dict(variance_type="fixed_large", clip_sample=False, prediction_type="v_prediction",
                                  timestep_spacing="trailing"), 8),
    "ddpm_small_sample_threshold": ("ddpm", dict(variance_type="fixed_small", clip_sample=False,
                                                 prediction_type="sample", timestep_spacing="linspace", **TH), 7),
    "ddpm_small_eps_1000": ("ddpm", dict(variance_type="fixed_small", clip_sample=False, prediction_type="epsilon"),
                            1000),
}
# DDPM: the indices into scheduler.timesteps of the single steps recorded (the last one steps to -1)
DDPM_STEP_INDICES = {"ddpm_small_eps_clip": [0, 4, 9], "ddpm_large_v": [0, 3, 7],
                     "ddpm_small_sample_threshold": [1, 6], "ddpm_small_eps_1000": [0, 500, 998, 999]}


# ------------------------------------------------------------------------------------------------
# safetensors reader (the writer is unet_ref.write_safetensors)

def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": "<f4", "F64": "<f8"}[info["dtype"]]
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + b:8 + n + e], dtype=dt).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def load_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    model = UNet2DModel.from_config(cfg).eval()
    model.load_state_dict(read_safetensors(os.path.join(model_dir, "diffusion_pytorch_model.safetensors")),
                          strict=True)
    assert model.config.in_channels == model.config.out_channels, "sampling needs in_channels == out_channels"
    return model


# ------------------------------------------------------------------------------------------------
# float64 schedulers

def alphas_cumprod64():
    betas = torch.linspace(SCHEDULE["beta_start"], SCHEDULE["beta_end"], SCHEDULE["num_train_timesteps"],
                           dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


class _TorchFloat32IsFloat64:
    """Stands in for the torch module inside a scheduler module: torch.float32 reads as torch.float64."""

    def __getattr__(self, name):
        return torch.float64 if name == "float32" else getattr(torch, name)


def make_scheduler(kind, kwargs, f64):
    cls = {"ddim": DDIMScheduler, "dpmsolver": DPMSolverMultistepScheduler, "ddpm": DDPMScheduler}[kind]
    s = cls(**SCHEDULE, **kwargs)
    if f64:
        ac = alphas_cumprod64()
        s.alphas_cumprod = ac
        if kind == "ddim":
            s.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64) if s.config.set_alpha_to_one else ac[0]
        if kind == "ddpm":
            s.one = torch.tensor(1.0, dtype=torch.float64)
        if kind == "dpmsolver":
            s.alpha_t = torch.sqrt(ac)
            s.sigma_t = torch.sqrt(1 - ac)
            s.lambda_t = torch.log(s.alpha_t) - torch.log(s.sigma_t)
            s.sigmas = ((1 - ac) / ac) ** 0.5
    return s


def set_timesteps(s, kind, n, f64):
    s.set_timesteps(n)
    if f64 and kind == "dpmsolver":
        assert s.config.final_sigmas_type == "zero"
        ac = s.alphas_cumprod.double()
        sig = ((1 - ac) / ac) ** 0.5
        mine = torch.cat([sig[s.timesteps], torch.zeros(1, dtype=torch.float64)])
        # the formula, evaluated on diffusers' own float32 alphas_cumprod, gives diffusers' float32 sigmas
        ref = DPMSolverMultistepScheduler.from_config(s.config)
        ref.set_timesteps(n)
        ac32 = ref.alphas_cumprod.numpy()
        sig32 = np.interp(ref.timesteps.numpy(), np.arange(len(ac32)), ((1 - ac32) / ac32) ** 0.5)
        sig32 = torch.from_numpy(np.concatenate([sig32, [0.0]]).astype(np.float32))
        assert torch.equal(ref.sigmas, sig32), "sigma formula differs from diffusers'"
        assert torch.equal(ref.timesteps, s.timesteps)
        s.sigmas = mine


# ------------------------------------------------------------------------------------------------

def unet(model, x, t, f64):
    tt = torch.full((x.shape[0],), float(t), dtype=torch.float32)
    with torch.no_grad():
        return unet_ref.run(model, x, tt, f64)


def run_loop(model32, model64, kind, kwargs, n, x_T, f64):
    s = make_scheduler(kind, kwargs, f64)
    set_timesteps(s, kind, n, f64)
    model = model64 if f64 else model32
    x = x_T.double() if f64 else x_T.clone()
    states = []
    saved_torch = dpm_module.torch
    if f64 and kind == "dpmsolver":
        dpm_module.torch = _TorchFloat32IsFloat64()  # its step() upcasts the sample "to float32"
    try:
        for t in s.timesteps:
            out = unet(model, x, t, f64)
            x = s.step(out, t, x).prev_sample
            assert x.dtype == (torch.float64 if f64 else torch.float32), x.dtype
            assert torch.isfinite(x).all()
            states.append(x.clone())
    finally:
        dpm_module.torch = saved_torch
    return [int(t) for t in s.timesteps], states, s


def ddpm_steps(model32, kwargs, n, indices, x_T):
    """Single DDPM steps with the noise given: mean (noise 0) and std (noise 1 minus noise 0)."""
    res = []
    s32 = make_scheduler("ddpm", kwargs, False)
    s32.set_timesteps(n)
    s64 = make_scheduler("ddpm", kwargs, True)
    s64.set_timesteps(n)
    assert torch.equal(s32.timesteps, s64.timesteps)
    saved = ddpm_module.randn_tensor
    gen = torch.Generator().manual_seed(SEED + 7)
    try:
        for k, i in enumerate(indices):
            t = s32.timesteps[i]
            prev_t = int(s32.previous_timestep(t))
            # an x_t at noise level t: x_T scaled plus some structure, different per step
            xt = (x_T * (0.6 + 0.3 * k) + 0.4 * torch.randn(x_T.shape, generator=gen)).float()
            mo = unet(model32, xt, t, False)
            outs = {}
            for tag, s, dt in (("32", s32, torch.float32), ("64", s64, torch.float64)):
                got = []
                for value in (0.0, 1.0):
                    ddpm_module.randn_tensor = (lambda shape, value=value, dt=dt, **kw:
                                                torch.full(shape, value, dtype=dt))
                    got.append(s.step(mo.to(dt), t, xt.to(dt)).prev_sample)
                outs["mean" + tag] = got[0]
                outs["std" + tag] = got[1] - got[0]
            res.append(dict(t=int(t), prev_t=prev_t, xt=xt, model_output=mo, **outs))
    finally:
        ddpm_module.randn_tensor = saved
    return res, [int(t) for t in s32.timesteps], s32


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="src/library/src/test/resources/crosscheck/one_level_odd")
    ap.add_argument("--out", default="src/library/src/test/resources/crosscheck")
    args = ap.parse_args()
    torch.set_num_threads(1)
    unet_ref.check_f64_formula()
    model32 = load_model(args.model)
    model64 = load_model(args.model).double()
    cfg = model32.config
    h, w = (cfg.sample_size, cfg.sample_size) if isinstance(cfg.sample_size, int) else tuple(cfg.sample_size)
    gen = torch.Generator().manual_seed(SEED)
    x_T = torch.randn(N_IMAGES, cfg.in_channels, h, w, generator=gen)

    tensors = {"x_T": x_T}
    cases = []
    for name, (kind, kwargs, n) in CASES.items():
        if kind == "ddpm":
            steps, timesteps, s = ddpm_steps(model32, kwargs, n, DDPM_STEP_INDICES[name], x_T)
            recs = []
            for j, st in enumerate(steps):
                for key in ("xt", "model_output", "mean32", "std32", "mean64", "std64"):
                    tensors[f"{name}.{j}.{key}"] = st[key]
                recs.append(dict(t=st["t"], prev_t=st["prev_t"]))
                e = float((st["mean32"].double() - st["mean64"]).abs().max())
                print(f"{name} step t={st['t']}->{st['prev_t']}: |mean32 - mean64| {e:.3g}, std32 "
                      f"{float(st['std32'].abs().max()):.4g}")
            cases.append(dict(name=name, kind=kind, num_inference_steps=n, timesteps=timesteps, steps=recs,
                              scheduler_config=json.loads(s.to_json_string())))
            continue
        ts32, xs32, s = run_loop(model32, model64, kind, kwargs, n, x_T, False)
        ts64, xs64, _ = run_loop(model32, model64, kind, kwargs, n, x_T, True)
        assert ts32 == ts64
        for i, (a, b) in enumerate(zip(xs32, xs64)):
            tensors[f"{name}.x32.{i}"] = a
            tensors[f"{name}.x64.{i}"] = b
        e = [float((a.double() - b).abs().max()) for a, b in zip(xs32, xs64)]
        print(f"{name}: timesteps {ts32}, max|x| {float(xs64[-1].abs().max()):.4g}, |run32 - run64| per step "
              + " ".join(f"{v:.2g}" for v in e))
        cases.append(dict(name=name, kind=kind, num_inference_steps=n, timesteps=ts32,
                          scheduler_config=json.loads(s.to_json_string())))

    d = os.path.join(args.out, "sampler")
    os.makedirs(d, exist_ok=True)
    meta = {"generator": "benchmarks/crosscheck/diffusers_sampler_reference.py", "seed": SEED,
            "diffusers_version": diffusers.__version__, "torch_version": torch.__version__,
            "model": os.path.basename(os.path.normpath(args.model))}
    with open(os.path.join(d, "cases.json"), "w") as f:
        json.dump(dict(meta, cases=cases), f, indent=1)
        f.write("\n")
    unet_ref.write_safetensors(os.path.join(d, "reference.safetensors"), tensors, meta)
    print(f"wrote {len(cases)} cases, {len(tensors)} tensors to {d}")


if __name__ == "__main__":
    sys.exit(main())
