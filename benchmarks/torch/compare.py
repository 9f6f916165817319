#!/usr/bin/env python3
"""diffusion4j vs PyTorch on the CPU, interleaved, side by side. Run through benchmarks/torch-compare.sh.

What is timed (both sides float32, the same architecture, config, batch and thread count):
  train    one optimisation step as diffusers' train_unconditional.py does it: batch from an in-memory dataset
           with random horizontal flips, random timesteps, noise + add_noise, forward, MSE loss (epsilon),
           backward, clip_grad_norm_(1.0), AdamW (lr 1e-4 with linear warmup, betas (0.95, 0.999),
           weight decay 1e-6) and the EMA update. Ours: io.diffusion4j.train.Trainer.step().
  denoise  one sampling step: the model's inference forward plus DDPMScheduler.step (epsilon, fixed_small,
           clip_sample) on the running sample, timesteps 999, 998, ... Ours: what io.diffusion4j.sample.Sampler
           does per step (UNet2DModel.sharingParameters() forward + the fused ddpmStep kernel).
Each side uses its own layout (PyTorch NCHW as diffusers; ours NHWC) and its fastest stock settings
(PyTorch: torch.no_grad for sampling, AdamW(foreach=True), zero_grad(set_to_none=True), _foreach EMA).

Interleaving: ours runs in a separate long-lived JVM (io.diffusion4j.bench.TorchCompareRunner) that this
process drives over a pipe; PyTorch runs in this process. Per case, both sides are set up and warmed up,
then R rounds each give both sides one turn of the same number of iterations, in alternating order (ours
first in even rounds, PyTorch first in odd ones). Only one side computes at a time (the other blocks on
the pipe), both keep their warmed state, and a change of machine load during the run hits both sides
alike instead of one. Between turns the driver sleeps SETTLE seconds, so the previous side's idle
worker threads (OpenBLAS and OpenMP spin-wait for a while after a parallel region) stop spinning before
the next side's turn starts. Reported: medians over all timed iterations, the ratio of medians
(PyTorch time / ours: > 1 means diffusion4j is faster) and the range of that ratio over the rounds.

FLOPs: benchmarks/torch/flops.py, one analytic count from the config for both sides.
SGEMM peak: torch.mm (OpenBLAS, same thread count) on square matrices, the best median over sizes;
ours: LinearKernels.linear on the same sizes, for reference.
"""

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import configs  # noqa: E402
import flops  # noqa: E402
import unet2d  # noqa: E402
import validate  # noqa: E402

REPO = configs.REPO
SETTLE = 0.3
TARGETS = {  # the speed targets: required ratio torch time / ours
    "fashion-train-b64": (1.5, ">= 1.5"),
    "fashion-denoise-b1": (3.0, ">= 3"),
    "fashion-denoise-b16": (1.5, ">= 1.5"),
    "cifar10-train-b8": (1.0, "> 1"),
    "cifar10-denoise-b8": (1.0, "> 1"),
}


# ------------------------------------------------------------------------------------------------
# machine state

def read_loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_busy_jiffies():
    """Busy jiffies of all CPUs (user nice system irq softirq steal) and the clock tick."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def process_jiffies(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime
    except OSError:
        return 0


def cpu_model():
    """lscpu's model name, cores, threads per core, caches and the widest vector extension."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True,
                             env=dict(os.environ, LC_ALL="C")).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    f = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            f[k.strip()] = v.strip()
    flags = f.get("Flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    parts = [f.get("Model name", "unknown CPU")]
    if "Core(s) per socket" in f:
        parts.append(f"{f['Core(s) per socket']} cores per socket x {f.get('Socket(s)', '?')} socket(s), "
                     f"{f.get('Thread(s) per core', '?')} thread(s) per core")
    parts.append(simd)
    caches = [f"{k} {f[k]}" for k in ("L1d cache", "L2 cache", "L3 cache") if k in f]
    if caches:
        parts.append(", ".join(caches))
    return "; ".join(parts)


def pkg_version(name):
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def blas_library():
    """The BLAS shared library this process has mapped (after a matmul)."""
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            base = os.path.basename(p)
            if p.startswith("/") and base.startswith("lib") and ("blas" in base or "lapack" in base):
                libs.add(os.path.realpath(p))
    return ", ".join(sorted(libs)) or "none mapped"


def git_describe():
    try:
        return subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ------------------------------------------------------------------------------------------------
# diffusion4j's side

class Ours:
    def __init__(self, cmd):
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        first = self.p.stdout.readline().strip()
        if first != "ok ready":
            raise RuntimeError(f"the Java runner did not start (said {first!r}); command: {' '.join(cmd)}")

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        reply = self.p.stdout.readline().strip()
        if not reply.startswith("ok "):
            raise RuntimeError(f"Java runner: {line!r} -> {reply or '(no reply: the process ended)'}")
        return reply[3:]

    def setup(self, case):
        reply = self.ask(f"setup {case.name} {case.model} {case.kind} {case.batch}")
        fields = dict(kv.split("=", 1) for kv in reply.split(" ")[2:])
        return int(fields["params"]), json.loads(fields["config"]), fields["hw"]

    def run(self, name, iters):
        return [int(t) / 1e9 for t in self.ask(f"run {name} {iters}").split()[2:]]

    def gemm(self, n, iters):
        return [int(t) / 1e9 for t in self.ask(f"gemm {n} {n} {n} {iters}").split()[1:]]

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()


# ------------------------------------------------------------------------------------------------
# PyTorch's side

def alphas_cumprod(T=1000, beta_start=1e-4, beta_end=0.02):
    """DDPMScheduler's default linear schedule (float32, as diffusers)."""
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0)


class TorchTrain:
    """train_unconditional.py's step (see the module comment)."""

    def __init__(self, config, batch, seed=1234):
        torch.manual_seed(seed)
        self.model = unet2d.UNet2DModel(**config).train()
        h, w = configs.sample_hw(config)
        c = config.get("in_channels", 3)
        self.gen = torch.Generator().manual_seed(seed)
        self.data = torch.rand(512, c, h, w, generator=self.gen) * 2 - 1
        self.batch = batch
        self.acp = alphas_cumprod()
        self.params = [p for p in self.model.parameters()]
        self.opt = torch.optim.AdamW(self.params, lr=1e-4, betas=(0.95, 0.999), eps=1e-8, weight_decay=1e-6,
                                     foreach=True)
        self.ema = [p.detach().clone() for p in self.params]
        self.step_count = 0

    def step(self):
        n = self.batch
        idx = torch.randint(0, self.data.shape[0], (n,), generator=self.gen)
        flip = torch.rand(n, generator=self.gen) < 0.5
        clean = self.data[idx]
        clean = torch.where(flip[:, None, None, None], clean.flip(-1), clean)
        noise = torch.randn(clean.shape, generator=self.gen)
        t = torch.randint(0, 1000, (n,), generator=self.gen)
        a = self.acp[t]
        noisy = a.sqrt()[:, None, None, None] * clean + (1 - a).sqrt()[:, None, None, None] * noise
        out = self.model(noisy, t)
        loss = F.mse_loss(out.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.step_count += 1
        for g in self.opt.param_groups:
            g["lr"] = 1e-4 * min(1.0, self.step_count / 500)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        # EMAModel (power 3/4, inv_gamma 1, max 0.9999) with torch's foreach kernels
        decay = min(0.9999, 1 - (1 + self.step_count) ** -0.75)
        with torch.no_grad():
            torch._foreach_mul_(self.ema, decay)
            torch._foreach_add_(self.ema, self.params, alpha=1 - decay)
        return float(loss)


class TorchDenoise:
    """One DDPMScheduler.step (epsilon, fixed_small, clip_sample 1) after the model's forward, in no_grad."""

    def __init__(self, config, batch, seed=1234):
        torch.manual_seed(seed)
        self.model = unet2d.UNet2DModel(**config).eval()
        h, w = configs.sample_hw(config)
        self.gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batch, config.get("out_channels", 3), h, w, generator=self.gen)
        self.acp = alphas_cumprod()
        self.i = 0

    @torch.no_grad()
    def step(self):
        t = 999 - self.i % 1000
        prev = t - 1
        self.i += 1
        model_output = self.model(self.x, torch.full((self.x.shape[0],), t, dtype=torch.long))
        sample = self.x
        # diffusers DDPMScheduler.step, the same expressions
        alpha_prod_t = self.acp[t]
        alpha_prod_t_prev = self.acp[prev] if prev >= 0 else torch.tensor(1.0)
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t
        pred_original_sample = (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5
        pred_original_sample = pred_original_sample.clamp(-1.0, 1.0)
        pred_original_sample_coeff = (alpha_prod_t_prev ** 0.5 * current_beta_t) / beta_prod_t
        current_sample_coeff = current_alpha_t ** 0.5 * beta_prod_t_prev / beta_prod_t
        pred_prev_sample = pred_original_sample_coeff * pred_original_sample + current_sample_coeff * sample
        if t > 0:
            variance_noise = torch.randn(model_output.shape, generator=self.gen, dtype=model_output.dtype)
            variance = torch.clamp((1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t, min=1e-20)
            pred_prev_sample = pred_prev_sample + variance ** 0.5 * variance_noise
        self.x = pred_prev_sample


def torch_run(work, iters):
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        work.step()
        times.append(time.perf_counter() - t0)
    return times


def torch_gemm(n, iters):
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return times


# ------------------------------------------------------------------------------------------------

def same_config(java_cfg, torch_cfg):
    """Both configs with diffusers' defaults filled in; returns the differing keys."""
    a = unet2d.normalize_config(java_cfg)
    b = unet2d.normalize_config(torch_cfg)
    diff = []
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, (list, tuple)) or isinstance(vb, (list, tuple)):
            same = list(va) == list(vb)
        elif isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool):
            same = float(va) == float(vb)
        else:
            same = va == vb
        if not same:
            diff.append(f"{k}: ours {va!r}, torch {vb!r}")
    return diff


def median(v):
    return statistics.median(v)


def measure_case(case, ours, rounds, turn_seconds, log):
    config = configs.model_config(case.model)
    h, w = configs.sample_hw(config)
    n_params, java_cfg, hw = ours.setup(case)
    work = (TorchTrain if case.kind == "train" else TorchDenoise)(config, case.batch)
    t_params = unet2d.parameter_count(work.model)
    if n_params != t_params or n_params != configs.PARAMS[case.model]:
        raise RuntimeError(f"{case.name}: parameter counts differ: ours {n_params}, torch {t_params}, "
                           f"expected {configs.PARAMS[case.model]}")
    diff = same_config(java_cfg, config)
    if diff or hw != f"{h}x{w}":
        raise RuntimeError(f"{case.name}: the two sides run different configurations: {diff} (ours {hw})")

    # warm-up: at least 2 iterations and 1 s per side, the last iteration sets the turn length
    def warm(fn):
        t_end, times = time.perf_counter() + 1.0, []
        while len(times) < 2 or time.perf_counter() < t_end:
            times += fn(1)
        return times[-1]
    w_ours = warm(lambda k: ours.run(case.name, k))
    time.sleep(SETTLE)
    w_torch = warm(lambda k: torch_run(work, k))
    iters = max(1, round(turn_seconds / max(w_ours, w_torch)))
    log(f"  {case.name}: warm-up {w_ours * 1e3:.1f} ms ours, {w_torch * 1e3:.1f} ms torch; {rounds} rounds x "
        f"{iters} iterations per side")

    ours_t, torch_t, round_ratios = [], [], []
    for r in range(rounds):
        order = ("ours", "torch") if r % 2 == 0 else ("torch", "ours")
        got = {}
        for side in order:
            time.sleep(SETTLE)
            got[side] = ours.run(case.name, iters) if side == "ours" else torch_run(work, iters)
        ours_t += got["ours"]
        torch_t += got["torch"]
        round_ratios.append(median(got["torch"]) / median(got["ours"]))
    ours.ask(f"free {case.name}")
    del work
    gc.collect()
    f = flops.case_flops(config, case.kind, case.batch, h, w)
    return dict(case=case, params=n_params, iters=iters, ours=ours_t, torch=torch_t, ratios=round_ratios, flops=f)


def measure_gemm(ours, sizes, rounds, log, best=None):
    """n x n x n SGEMM on both sides, alternating; updates and returns {side: (GFLOP/s, n, calls)}: the fastest
    single call seen (a peak: on a loaded machine a median would measure the load, not the hardware)."""
    best = best or {"torch": (0.0, 0, 0), "ours": (0.0, 0, 0)}
    for n in sizes:
        fl = 2.0 * n ** 3
        iters = max(3, int(round(3e9 / fl)))
        samples = {"torch": [], "ours": []}
        for r in range(rounds):
            for side in (("ours", "torch") if r % 2 == 0 else ("torch", "ours")):
                time.sleep(SETTLE)
                samples[side] += ours.gemm(n, iters) if side == "ours" else torch_gemm(n, iters)
        for side, v in samples.items():
            fastest, med = fl / min(v) / 1e9, fl / median(v) / 1e9
            log(f"  SGEMM {n}^3 {side}: fastest call {fastest:.1f} GFLOP/s, median {med:.1f} ({len(v)} calls)")
            g, bn, calls = best[side]
            best[side] = (fastest, n, calls + len(v)) if fastest > g else (g, bn, calls + len(v))
    return best


def fmt_ms(s):
    return f"{s * 1e3:.1f}" if s >= 0.01 else f"{s * 1e3:.2f}"


def report(results, gemm, meta):
    peak = max(gemm["torch"][0], gemm["ours"][0])  # the machine's SGEMM peak: the faster implementation's
    lines = []
    add = lines.append
    add("# diffusion4j vs PyTorch on the CPU")
    add("")
    if meta["loaded"]:
        add(f"**Taken on a loaded machine**: other processes kept on average {meta['others_cpus']:.2f} of the "
            f"{meta['cpus']} CPUs busy during the run (load average before: {meta['load_before']}, after: "
            f"{meta['load_after']}). Absolute times and GFLOP/s are depressed and noisy; the ratios are the "
            f"meaningful figures (both sides were interleaved under the same load), but repeat on an idle "
            f"machine before quoting them as final.")
    else:
        add(f"Machine idle apart from this run (other processes: {meta['others_cpus']:.2f} of {meta['cpus']} CPUs "
            f"on average; load average before: {meta['load_before']}, after: {meta['load_after']}).")
    add("")
    add(f"- Machine: {meta['cpu_model']}; {meta['cpus']} logical CPUs; {meta['os']}")
    add(f"- Date: {meta['date']}; total wall time {meta['wall']:.0f} s")
    add(f"- Threads: {meta['threads']} on both sides (torch.set_num_threads, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS; "
        f"diffusion4j Backend.setThreads)")
    add(f"- diffusion4j {meta['git']} ({meta['ours_info']})")
    add(f"- PyTorch {torch.__version__} (Debian python3-torch {meta['torch_pkg']}), BLAS {meta['blas']} "
        f"(libopenblas0-pthread {meta['openblas_pkg']}), oneDNN {meta['onednn']}; Python {platform.python_version()}")
    add(f"- PyTorch's OpenMP wait policy: {meta['omp_policy']}{' (' + meta['omp_note'] + ')' if meta['omp_note'] else ''}")
    add(f"- The PyTorch model is benchmarks/torch/unet2d.py, validated in this run against diffusers' own outputs "
        f"and gradients ({meta['validation']})")
    add(f"- {meta['rounds']} interleaved rounds per case (see benchmarks/torch/compare.py); medians over all timed "
        f"iterations; ratio = PyTorch time / diffusion4j time (> 1: diffusion4j faster)")
    add(f"- SGEMM peak: **{peak:.1f} GFLOP/s**, the faster of: PyTorch's torch.mm (OpenBLAS) "
        f"{gemm['torch'][0]:.1f} GFLOP/s at n = {gemm['torch'][1]} and diffusion4j's LinearKernels.linear "
        f"{gemm['ours'][0]:.1f} GFLOP/s at n = {gemm['ours'][1]}: the fastest single n x n x n call "
        f"(n in {meta['gemm_sizes']}, {meta['threads']} threads, {gemm['torch'][2]} calls per side, measured "
        f"before and after the cases). The cases' GFLOP/s come from median step times, so load lowers them more "
        f"than the peak")
    add("")
    add("| case | GFLOP/step | diffusion4j ms/step | PyTorch ms/step | ratio (PyTorch/ours) | ratio range over rounds "
        "| target | diffusion4j img/s | PyTorch img/s | diffusion4j GFLOP/s (% of SGEMM peak) "
        "| PyTorch GFLOP/s (% of peak) |")
    add("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for res in results:
        c = res["case"]
        mo, mt = median(res["ours"]), median(res["torch"])
        ratio = mt / mo
        tgt, tgt_s = TARGETS.get(c.name, (None, ""))
        met = "" if tgt is None else (" met" if (ratio >= tgt if tgt > 1 else ratio > tgt) else " **not met**")
        go, gt = res["flops"] / mo / 1e9, res["flops"] / mt / 1e9
        add(f"| {c.name} | {res['flops'] / 1e9:.2f} | {fmt_ms(mo)} | {fmt_ms(mt)} | **{ratio:.2f}** | "
            f"{min(res['ratios']):.2f}-{max(res['ratios']):.2f} | {tgt_s}{met} | {c.batch / mo:.1f} | {c.batch / mt:.1f} "
            f"| {go:.1f} ({100 * go / peak:.0f}%) | {gt:.1f} ({100 * gt / peak:.0f}%) |")
    add("")
    add("Cases: *train* = one optimisation step (noising, forward, loss, backward, gradient clipping, AdamW, EMA); "
        "*denoise* = one sampling step (inference forward + DDPM scheduler update). fashion = the 28x28x1 "
        "32/64/64 Fashion-MNIST model (TrainCommand.defaultConfig(), 1,112,801 parameters); cifar10 = "
        "google/ddpm-cifar10-32's architecture (35,746,307 parameters), 32x32x3. GFLOP/step: convolutions, linear "
        "layers and attention matmuls counted from the config (benchmarks/torch/flops.py; training = 3x forward). "
        f"Iterations per turn: " + ", ".join(f"{r['case'].name} {r['iters']}" for r in results) + ".")
    add("")
    add("Reproduce: `benchmarks/torch-compare.sh` (options: `--quick`, `--rounds N`, `--turn-seconds S`, "
        "`--threads N`, `--cases a,b`).")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--java-cmd", help="the command starting TorchCompareRunner (a JSON list)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--turn-seconds", type=float, default=4.0,
                    help="target length of one side's turn (iterations = this / the slower side's warm-up step)")
    ap.add_argument("--cases", default=",".join(c.name for c in configs.CASES))
    ap.add_argument("--gemm-sizes", default="1024,2048")
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "torch-compare.md"))
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--probe", action="store_true",
                    help="only print the seconds of a short PyTorch probe (fashion denoise steps at batch 1 and 16); "
                         "torch-compare.sh runs it under each OpenMP wait policy and keeps PyTorch's faster one")
    ap.add_argument("--omp-note", default="", help="how the OpenMP wait policy was chosen (for the report)")
    args = ap.parse_args(argv)
    if args.probe:
        torch.set_num_threads(args.threads)
        total = 0.0
        for batch, iters in ((1, 8), (16, 3)):
            work = TorchDenoise(configs.fashion_config(), batch)
            torch_run(work, 2)
            total += median(torch_run(work, iters)) * iters
        print(f"{total:.4f}")
        return 0
    if args.java_cmd is None:
        ap.error("--java-cmd is required")
    wanted = args.cases.split(",")
    unknown = [c for c in wanted if c not in {k.name for k in configs.CASES}]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; known: {[c.name for c in configs.CASES]}")
    cases = [c for c in configs.CASES if c.name in wanted]
    if args.rounds < 2 or args.rounds % 2:
        ap.error("--rounds must be even and >= 2 (the order alternates between rounds: each side goes first "
                 "equally often)")

    t_start = time.time()
    log = lambda s: print(s, flush=True)  # noqa: E731
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    load_before = read_loadavg()
    log(f"load average before: {load_before}")

    log("validating benchmarks/torch/unet2d.py against diffusers' outputs and gradients ...")
    if validate.main([]) != 0:
        log("the PyTorch model no longer reproduces diffusers: refusing to time it")
        return 1
    try:
        import diffusers
        validation = f"committed diffusers 0.31.0 fixtures and diffusers {diffusers.__version__} directly"
    except Exception:
        validation = "committed diffusers 0.31.0 fixtures, bitwise"

    java_cmd = json.loads(args.java_cmd)
    busy0 = cpu_busy_jiffies()
    self0 = process_jiffies(os.getpid())
    ours = Ours(java_cmd)
    results = []
    try:
        ours_info = ours.ask("info")
        log(f"diffusion4j: {ours_info}; PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
        sizes = [int(s) for s in args.gemm_sizes.split(",")]
        log("SGEMM peak:")
        gemm = measure_gemm(ours, sizes, 2, log)
        log("cases:")
        for case in cases:
            results.append(measure_case(case, ours, args.rounds, args.turn_seconds, log))
            r = results[-1]
            log(f"    ours {median(r['ours']) * 1e3:.2f} ms, torch {median(r['torch']) * 1e3:.2f} ms, ratio "
                f"{median(r['torch']) / median(r['ours']):.2f} (rounds {min(r['ratios']):.2f}-{max(r['ratios']):.2f})")
        log("SGEMM peak again (the fastest call of both measurements counts):")
        gemm = measure_gemm(ours, sizes, 2, log, gemm)
        java_jiffies = process_jiffies(ours.p.pid)
    finally:
        ours.close()
    busy1 = cpu_busy_jiffies()
    self1 = process_jiffies(os.getpid())
    wall = time.time() - t_start
    hz = os.sysconf("SC_CLK_TCK")
    cpus = os.cpu_count()
    ours_jiffies = (self1 - self0) + java_jiffies
    others = max(0.0, (busy1 - busy0 - ours_jiffies) / hz / max(wall, 1e-9))
    load_after = read_loadavg()
    log(f"load average after: {load_after}; other processes used {others:.2f} CPUs on average")

    onednn = "?"
    for line in torch.__config__.show().splitlines():
        if "MKL-DNN" in line or "oneDNN" in line:
            onednn = line.split("v", 1)[-1].split(" ")[0] if "v" in line else line.strip()
    meta = dict(
        # the CPU time other processes used during the run is the measurement; the 1-minute load
        # average before the run only echoes what finished just before it
        loaded=others > 0.25,
        others_cpus=others, cpus=cpus, load_before=load_before, load_after=load_after, cpu_model=cpu_model(),
        os=f"{platform.system()} {platform.release()}", date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        wall=wall, threads=args.threads, git=git_describe(), ours_info=ours_info, torch_pkg=pkg_version("python3-torch"),
        blas=blas_library(), openblas_pkg=pkg_version("libopenblas0-pthread"), onednn=onednn, validation=validation,
        rounds=args.rounds, gemm_sizes=sizes, omp_policy=os.environ.get("OMP_WAIT_POLICY", "default (unset)"),
        omp_note=args.omp_note)
    md = report(results, gemm, meta)
    print()
    print(md)
    if not args.no_write:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(md)
        os.replace(tmp, args.out)
        log(f"wrote {os.path.relpath(args.out, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
