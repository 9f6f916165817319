#!/usr/bin/env python3
"""Terms of the variational bound computed by improved-diffusion itself, as a fixture for VlbCrossCheckTest.

Runs openai/improved-diffusion's own GaussianDiffusion._vb_terms_bpd and _prior_bpd (float32 torch, as
their calc_bpd_loop does) on fixed inputs and writes them with the expected bits/dim to
src/library/src/test/resources/crosscheck/improved_diffusion_vlb.json. The improved-diffusion source is not part of
this repository: check it out (commit 1bc7bbbdc414d83d4abf2ad8cc1446dc36c4e4d5 was used) and put its root
on PYTHONPATH; it needs only numpy and torch (Debian's python3-torch 1.13 works):

    git clone https://github.com/openai/improved-diffusion /tmp/idiff   # or extract the four files
    PYTHONPATH=/tmp/idiff /usr/bin/python3 benchmarks/crosscheck/improved_diffusion_vlb_reference.py OUT.json

Inputs: a linear schedule (1e-4..0.02, T = 1000), 4 samples of shape [3, 5, 7] of 8-bit data (both edge
levels present), x_t drawn from q(x_t | x0) at t = [0, 1, 500, 999], and model outputs whose x0 prediction
is x0 plus N(0, 0.005^2) (so the decoder and the KL terms are in their working range), for every
prediction type (epsilon, sample = START_X; v is not an improved-diffusion mean type and is left out)
and both fixed variances, with clip_denoised True and False.
"""
import json
import sys

import numpy as np
import torch as th

from improved_diffusion import gaussian_diffusion as gd


def main(out_path):
    rng = np.random.default_rng(20240607)
    T = 1000
    betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
    B, shape = 4, (3, 5, 7)
    t = np.array([0, 1, 500, 999])
    k = rng.integers(0, 256, size=(B,) + shape)
    k.reshape(-1)[:4] = [0, 255, 0, 255]
    x0 = (k / 127.5 - 1.0).astype(np.float32)
    ab = np.cumprod(1.0 - betas)[t].reshape(B, 1, 1, 1)
    eps = rng.standard_normal(x0.shape)
    xt = (np.sqrt(ab) * x0 + np.sqrt(1.0 - ab) * eps).astype(np.float32)
    target = x0 + 0.005 * rng.standard_normal(x0.shape)
    outputs = {
        "epsilon": ((xt - np.sqrt(ab) * target) / np.sqrt(1.0 - ab)).astype(np.float32),
        "sample": target.astype(np.float32),
    }
    mean_types = {"epsilon": gd.ModelMeanType.EPSILON, "sample": gd.ModelMeanType.START_X}
    var_types = {"fixed_small": gd.ModelVarType.FIXED_SMALL, "fixed_large": gd.ModelVarType.FIXED_LARGE}
    cases = []
    for pred, out in outputs.items():
        for vname, vt in var_types.items():
            for clip in (True, False):
                diff = gd.GaussianDiffusion(betas=betas, model_mean_type=mean_types[pred], model_var_type=vt,
                                            loss_type=gd.LossType.MSE)
                o = th.from_numpy(out)
                res = diff._vb_terms_bpd(lambda x, ts: o, th.from_numpy(x0), th.from_numpy(xt),
                                         th.from_numpy(t), clip_denoised=clip)
                cases.append({"prediction": pred, "variance": vname, "clip": clip,
                              "model_output": out.reshape(-1).tolist(),
                              "bpd": res["output"].double().tolist()})
    prior = gd.GaussianDiffusion(betas=betas, model_mean_type=gd.ModelMeanType.EPSILON,
                                 model_var_type=gd.ModelVarType.FIXED_SMALL,
                                 loss_type=gd.LossType.MSE)._prior_bpd(th.from_numpy(x0))
    doc = {"source": "openai/improved-diffusion 1bc7bbbdc414d83d4abf2ad8cc1446dc36c4e4d5, "
                     "GaussianDiffusion._vb_terms_bpd / _prior_bpd, torch " + th.__version__,
           "schedule": {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": T},
           "batch": B, "n_per_sample": int(np.prod(shape)), "timesteps": t.tolist(),
           "x0": x0.reshape(-1).tolist(), "x_t": xt.reshape(-1).tolist(),
           "prior_bpd": prior.double().tolist(), "cases": cases}
    with open(out_path, "w") as f:
        json.dump(doc, f)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "improved_diffusion_vlb.json")
