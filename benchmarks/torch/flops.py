"""Analytic FLOP count of a diffusers UNet2DModel from its config: the one count both sides' GFLOP/s use.

Counted (2 FLOPs per multiply-add): every convolution (2 * N * Hout * Wout * Cout * Cin * kh * kw), every
linear layer (2 * rows * in * out: the time-embedding MLP, each resnet's time_emb_proj, attention's
to_q/to_k/to_v/to_out over N * H * W tokens) and attention's two batched matmuls (Q K^T and P V:
2 * 2 * N * tokens^2 * channels). Not counted: GroupNorm, SiLU, softmax, additions, concatenation,
upsampling, the time projection and the scheduler/optimizer element-wise work (all memory-bound, a few
percent of the arithmetic). A training step counts 3x the forward (backward = input gradient + weight
gradient, each one forward's worth), a denoising step 1x.

Usage: python3 flops.py  (prints the counts of the comparison's cases)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet2d  # noqa: E402  (normalize_config: diffusers' defaults, no torch modules built)


def forward_flops(config, n, h, w):
    """FLOPs of one forward pass of batch n at h x w."""
    cfg = unet2d.normalize_config(config)
    boc = list(cfg["block_out_channels"])
    temb = 4 * boc[0]
    lpb = cfg["layers_per_block"]
    ahd = cfg["attention_head_dim"]
    total = 0

    def conv(cin, cout, k, ho, wo):
        return 2 * n * ho * wo * cout * cin * k * k

    def linear(rows, fin, fout):
        return 2 * rows * fin * fout

    def resnet(cin, cout, hh, ww):
        f = conv(cin, cout, 3, hh, ww) + linear(n, temb, cout) + conv(cout, cout, 3, hh, ww)
        if cin != cout:
            f += conv(cin, cout, 1, hh, ww)
        return f

    def attention(c, hh, ww):
        tokens = hh * ww
        # heads only split the channels: Q K^T and P V cost the same for any head count
        return 4 * linear(n * tokens, c, c) + 2 * (2 * n * tokens * tokens * c)

    total += linear(n, boc[0], temb) + linear(n, temb, temb)  # time_embedding
    total += conv(cfg["in_channels"], boc[0], 3, h, w)  # conv_in
    skips = [(boc[0], h, w)]
    c, hh, ww = boc[0], h, w
    for i, t in enumerate(cfg["down_block_types"]):
        cout = boc[i]
        for _ in range(lpb):
            total += resnet(c, cout, hh, ww)
            c = cout
            if t == "AttnDownBlock2D":
                total += attention(c, hh, ww)
            skips.append((c, hh, ww))
        if i != len(boc) - 1:
            pad = cfg["downsample_padding"]
            extra = 1 if pad == 0 else 2 * pad  # padding 0: diffusers pads (0, 1, 0, 1)
            hh, ww = (hh + extra - 3) // 2 + 1, (ww + extra - 3) // 2 + 1
            total += conv(c, c, 3, hh, ww)
            skips.append((c, hh, ww))
    total += 2 * resnet(c, c, hh, ww) + attention(c, hh, ww)  # mid block
    rev = list(reversed(boc))
    for i, t in enumerate(cfg["up_block_types"]):
        cout = rev[i]
        for _ in range(lpb + 1):
            sc, sh, sw = skips.pop()
            assert (sh, sw) == (hh, ww), "skip connection size mismatch"
            total += resnet(c + sc, cout, hh, ww)
            c = cout
            if t == "AttnUpBlock2D":
                total += attention(c, hh, ww)
        if i != len(boc) - 1:
            hh, ww = 2 * hh, 2 * ww
            total += conv(c, c, 3, hh, ww)
    assert not skips, "unconsumed skip connections"
    total += conv(boc[0], cfg["out_channels"], 3, h, w)  # conv_out
    return total


def case_flops(config, kind, n, h, w):
    f = forward_flops(config, n, h, w)
    return 3 * f if kind == "train" else f


def main():
    import configs
    for c in configs.CASES:
        cfg = configs.model_config(c.model)
        h, w = configs.sample_hw(cfg)
        print(f"{c.name}: {case_flops(cfg, c.kind, c.batch, h, w) / 1e9:.3f} GFLOP")


if __name__ == "__main__":
    main()
