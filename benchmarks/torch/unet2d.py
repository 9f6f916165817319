"""A compact PyTorch re-implementation of diffusers' UNet2DModel, for the speed comparison.

diffusers itself cannot be installed here (no PyPI), so this module builds the same network from the same
config.json: the same modules, the same parameter names (state_dict keys) and shapes, and the same operations
in the same order as diffusers v0.31.0 with AttnProcessor (the processor diffusers selects on torch < 2, e.g.
Debian's python3-torch 1.13), for the subset of the configuration diffusion4j supports:

  time_embedding_type "positional", resnet_time_scale_shift "default", downsample_type / upsample_type
  "conv", no class embedding, center_input_sample false, act_fn "silu", add_attention true;
  down blocks DownBlock2D / AttnDownBlock2D, up blocks UpBlock2D / AttnUpBlock2D, mid block UNetMidBlock2D.

Mapping to diffusers (src/diffusers/models/...):
  UNet2DModel            unets/unet_2d.py          conv_in, time_proj, time_embedding, down/mid/up, conv_norm_out, conv_out
  Timesteps              embeddings.py             get_timestep_embedding (computed in float32, as diffusers)
  TimestepEmbedding      embeddings.py             linear_1, SiLU, linear_2
  ResnetBlock2D          resnet.py                 norm1, conv1, time_emb_proj, norm2, dropout, conv2, conv_shortcut
  Attention+AttnProcessor attention_processor.py   group_norm, to_q, to_k, to_v, to_out.0 (+ Dropout to_out.1)
  Downsample2D           downsampling.py           conv (3x3 stride 2, padding downsample_padding; pad (0,1,0,1) if 0)
  Upsample2D             upsampling.py             nearest x2 then conv 3x3
  DownBlock2D, AttnDownBlock2D, UNetMidBlock2D, UpBlock2D, AttnUpBlock2D   unets/unet_2d_blocks.py

validate.py checks this module against outputs and gradients written by the real diffusers
(src/library/src/test/resources/crosscheck) and, when diffusers is importable, against diffusers directly.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = dict(
    sample_size=None, in_channels=3, out_channels=3, center_input_sample=False, time_embedding_type="positional",
    freq_shift=0, flip_sin_to_cos=True,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(224, 448, 672, 896), layers_per_block=2, mid_block_scale_factor=1, downsample_padding=1,
    downsample_type="conv", upsample_type="conv", dropout=0.0, act_fn="silu", attention_head_dim=8,
    norm_num_groups=32, attn_norm_num_groups=None, norm_eps=1e-5, resnet_time_scale_shift="default",
    add_attention=True, class_embed_type=None, num_class_embeds=None, num_train_timesteps=None,
    # later diffusers releases (and diffusion4j's config writer) also name these two; only their defaults exist here
    time_embedding_dim=None, mid_block_type="UNetMidBlock2D",
)
# keys diffusers writes that do not change the network
INFORMATIONAL = {"_class_name", "_diffusers_version", "_name_or_path"}


def get_timestep_embedding(timesteps, embedding_dim, flip_sin_to_cos=False, downscale_freq_shift=1.0, scale=1.0,
                           max_period=10000, dtype=torch.float32):
    """diffusers.models.embeddings.get_timestep_embedding; `dtype` float32 is diffusers' behaviour (it casts
    the timesteps with .float() whatever the model's dtype); float64 gives the exact value for checks."""
    assert timesteps.dim() == 1, "Timesteps should be a 1d-array"
    half_dim = embedding_dim // 2
    exponent = -math.log(max_period) * torch.arange(start=0, end=half_dim, dtype=dtype, device=timesteps.device)
    exponent = exponent / (half_dim - downscale_freq_shift)
    emb = torch.exp(exponent)
    emb = timesteps[:, None].to(dtype) * emb[None, :]
    emb = scale * emb
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half_dim:], emb[:, :half_dim]], dim=-1)
    if embedding_dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class Timesteps(nn.Module):
    def __init__(self, num_channels, flip_sin_to_cos, downscale_freq_shift):
        super().__init__()
        self.num_channels = num_channels
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift
        self.dtype = torch.float32  # diffusers: always float32

    def forward(self, timesteps):
        return get_timestep_embedding(timesteps, self.num_channels, self.flip_sin_to_cos, self.downscale_freq_shift,
                                      dtype=self.dtype)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels, time_embed_dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def forward(self, sample):
        return self.linear_2(self.act(self.linear_1(sample)))


class ResnetBlock2D(nn.Module):
    """resnet_time_scale_shift "default": the projected time embedding is added before norm2."""

    def __init__(self, in_channels, out_channels, temb_channels, eps, groups, dropout, output_scale_factor):
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(num_groups=groups, num_channels=in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(num_groups=groups, num_channels=out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = None
        if in_channels != out_channels:
            self.conv_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=True)

    def forward(self, input_tensor, temb):
        hidden_states = self.nonlinearity(self.norm1(input_tensor))
        hidden_states = self.conv1(hidden_states)
        temb = self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        hidden_states = self.norm2(hidden_states + temb)
        hidden_states = self.dropout(self.nonlinearity(hidden_states))
        hidden_states = self.conv2(hidden_states)
        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor)
        return (input_tensor + hidden_states) / self.output_scale_factor


class Attention(nn.Module):
    """diffusers Attention as built by the UNet2D blocks (_from_deprecated_attn_block, residual connection,
    upcast_softmax, bias) with AttnProcessor's computation."""

    def __init__(self, query_dim, heads, dim_head, rescale_output_factor, eps, norm_num_groups):
        super().__init__()
        inner_dim = dim_head * heads
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.rescale_output_factor = rescale_output_factor
        self.group_norm = None
        if norm_num_groups is not None:
            self.group_norm = nn.GroupNorm(num_channels=query_dim, num_groups=norm_num_groups, eps=eps, affine=True)
        self.to_q = nn.Linear(query_dim, inner_dim, bias=True)
        self.to_k = nn.Linear(query_dim, inner_dim, bias=True)
        self.to_v = nn.Linear(query_dim, inner_dim, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim, bias=True), nn.Dropout(0.0)])

    def head_to_batch_dim(self, tensor):
        b, s, d = tensor.shape
        h = self.heads
        return tensor.reshape(b, s, h, d // h).permute(0, 2, 1, 3).reshape(b * h, s, d // h)

    def batch_to_head_dim(self, tensor):
        bh, s, d = tensor.shape
        h = self.heads
        return tensor.reshape(bh // h, h, s, d).permute(0, 2, 1, 3).reshape(bh // h, s, d * h)

    def forward(self, hidden_states):
        residual = hidden_states
        batch_size, channel, height, width = hidden_states.shape
        hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        if self.group_norm is not None:
            hidden_states = self.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = self.head_to_batch_dim(self.to_q(hidden_states))
        key = self.head_to_batch_dim(self.to_k(hidden_states))
        value = self.head_to_batch_dim(self.to_v(hidden_states))
        # get_attention_scores: baddbmm(empty, q, k^T, beta=0, alpha=scale) == scale * bmm(q, k^T) (beta 0 ignores
        # the input; computed without it because Debian's torch 1.13 propagates NaN from the uninitialised input),
        # softmax in float32 (upcast_softmax; a no-op in float32)
        scores = self.scale * torch.bmm(query, key.transpose(-1, -2))
        probs = scores.float().softmax(dim=-1).to(query.dtype)
        hidden_states = torch.bmm(probs, value)
        hidden_states = self.batch_to_head_dim(hidden_states)
        hidden_states = self.to_out[1](self.to_out[0](hidden_states))
        hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        hidden_states = hidden_states + residual
        return hidden_states / self.rescale_output_factor


class Downsample2D(nn.Module):
    def __init__(self, channels, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=padding, bias=True)

    def forward(self, hidden_states):
        if self.padding == 0:
            hidden_states = F.pad(hidden_states, (0, 1, 0, 1), mode="constant", value=0)
        return self.conv(hidden_states)


class Upsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True)

    def forward(self, hidden_states):
        if hidden_states.shape[0] >= 64:
            hidden_states = hidden_states.contiguous()
        hidden_states = F.interpolate(hidden_states, scale_factor=2.0, mode="nearest")
        return self.conv(hidden_states)


class DownBlock(nn.Module):
    """DownBlock2D (attention_head_dim None) or AttnDownBlock2D."""

    def __init__(self, attn, num_layers, in_channels, out_channels, temb_channels, eps, groups, attention_head_dim,
                 add_downsample, downsample_padding, dropout):
        super().__init__()
        # diffusers registers attentions before resnets (the state-dict order)
        if attn:
            self.attentions = nn.ModuleList([
                Attention(out_channels, out_channels // attention_head_dim, attention_head_dim, 1.0, eps, groups)
                for _ in range(num_layers)])
        else:
            self.attentions = None
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, eps, groups, dropout, 1.0)
            for i in range(num_layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels, downsample_padding)]) if add_downsample else None

    def forward(self, hidden_states, temb):
        output_states = ()
        for i, resnet in enumerate(self.resnets):
            hidden_states = resnet(hidden_states, temb)
            if self.attentions is not None:
                hidden_states = self.attentions[i](hidden_states)
            output_states += (hidden_states,)
        if self.downsamplers is not None:
            hidden_states = self.downsamplers[0](hidden_states)
            output_states += (hidden_states,)
        return hidden_states, output_states


class UpBlock(nn.Module):
    """UpBlock2D or AttnUpBlock2D (num_layers = layers_per_block + 1, each resnet after a skip concat)."""

    def __init__(self, attn, num_layers, in_channels, prev_output_channel, out_channels, temb_channels, eps, groups,
                 attention_head_dim, add_upsample, dropout):
        super().__init__()
        resnets = []
        for i in range(num_layers):
            res_skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in_channels = prev_output_channel if i == 0 else out_channels
            resnets.append(ResnetBlock2D(resnet_in_channels + res_skip_channels, out_channels, temb_channels, eps,
                                         groups, dropout, 1.0))
        if attn:
            self.attentions = nn.ModuleList([
                Attention(out_channels, out_channels // attention_head_dim, attention_head_dim, 1.0, eps, groups)
                for _ in range(num_layers)])
        else:
            self.attentions = None
        self.resnets = nn.ModuleList(resnets)
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if add_upsample else None

    def forward(self, hidden_states, res_hidden_states_tuple, temb):
        for i, resnet in enumerate(self.resnets):
            res_hidden_states = res_hidden_states_tuple[-1]
            res_hidden_states_tuple = res_hidden_states_tuple[:-1]
            hidden_states = torch.cat([hidden_states, res_hidden_states], dim=1)
            hidden_states = resnet(hidden_states, temb)
            if self.attentions is not None:
                hidden_states = self.attentions[i](hidden_states)
        if self.upsamplers is not None:
            hidden_states = self.upsamplers[0](hidden_states)
        return hidden_states


class UNetMidBlock2D(nn.Module):
    def __init__(self, in_channels, temb_channels, eps, output_scale_factor, attention_head_dim, resnet_groups,
                 attn_groups, dropout):
        super().__init__()
        if attn_groups is None:
            attn_groups = resnet_groups  # resnet_time_scale_shift "default"
        self.attentions = nn.ModuleList([
            Attention(in_channels, in_channels // attention_head_dim, attention_head_dim, output_scale_factor, eps,
                      attn_groups)])
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels, in_channels, temb_channels, eps, resnet_groups, dropout, output_scale_factor)
            for _ in range(2)])

    def forward(self, hidden_states, temb):
        hidden_states = self.resnets[0](hidden_states, temb)
        hidden_states = self.attentions[0](hidden_states)
        return self.resnets[1](hidden_states, temb)


def normalize_config(config):
    """diffusers' defaults for missing keys; refuses what this module (and diffusion4j) does not implement."""
    cfg = dict(DEFAULTS)
    for k, v in config.items():
        if k in INFORMATIONAL:
            continue
        if k not in DEFAULTS:
            raise ValueError(f"unsupported UNet2DModel config key {k!r}")
        cfg[k] = v
    unsupported = dict(center_input_sample=False, time_embedding_type="positional", downsample_type="conv",
                       upsample_type="conv", act_fn="silu", resnet_time_scale_shift="default", add_attention=True,
                       class_embed_type=None, num_class_embeds=None, time_embedding_dim=None,
                       mid_block_type="UNetMidBlock2D")
    for k, want in unsupported.items():
        if cfg[k] != want:
            raise ValueError(f"{k}={cfg[k]!r} is not supported (only {want!r})")
    for t in cfg["down_block_types"]:
        if t not in ("DownBlock2D", "AttnDownBlock2D"):
            raise ValueError(f"down block type {t!r} not supported")
    for t in cfg["up_block_types"]:
        if t not in ("UpBlock2D", "AttnUpBlock2D"):
            raise ValueError(f"up block type {t!r} not supported")
    if len(cfg["down_block_types"]) != len(cfg["up_block_types"]) or \
            len(cfg["block_out_channels"]) != len(cfg["down_block_types"]):
        raise ValueError("block_out_channels, down_block_types and up_block_types must have the same length")
    return cfg


class UNet2DModel(nn.Module):
    def __init__(self, **config):
        super().__init__()
        cfg = normalize_config(config)
        self.config = cfg
        boc = list(cfg["block_out_channels"])
        time_embed_dim = boc[0] * 4
        eps, groups, dropout = cfg["norm_eps"], cfg["norm_num_groups"], cfg["dropout"]
        ahd = cfg["attention_head_dim"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], kernel_size=3, padding=(1, 1))
        self.time_proj = Timesteps(boc[0], cfg["flip_sin_to_cos"], cfg["freq_shift"])
        self.time_embedding = TimestepEmbedding(boc[0], time_embed_dim)

        # registration order = diffusers' state-dict order: down_blocks, up_blocks (created empty here), mid_block
        self.down_blocks = nn.ModuleList([])
        self.up_blocks = nn.ModuleList([])
        output_channel = boc[0]
        for i, t in enumerate(cfg["down_block_types"]):
            input_channel = output_channel
            output_channel = boc[i]
            is_final = i == len(boc) - 1
            self.down_blocks.append(DownBlock(
                t == "AttnDownBlock2D", cfg["layers_per_block"], input_channel, output_channel, time_embed_dim, eps,
                groups, ahd if ahd is not None else output_channel, not is_final, cfg["downsample_padding"], dropout))

        self.mid_block = UNetMidBlock2D(boc[-1], time_embed_dim, eps, cfg["mid_block_scale_factor"],
                                        ahd if ahd is not None else boc[-1], groups, cfg["attn_norm_num_groups"],
                                        dropout)

        rev = list(reversed(boc))
        output_channel = rev[0]
        for i, t in enumerate(cfg["up_block_types"]):
            prev_output_channel = output_channel
            output_channel = rev[i]
            input_channel = rev[min(i + 1, len(boc) - 1)]
            is_final = i == len(boc) - 1
            self.up_blocks.append(UpBlock(
                t == "AttnUpBlock2D", cfg["layers_per_block"] + 1, input_channel, prev_output_channel, output_channel,
                time_embed_dim, eps, groups, ahd if ahd is not None else output_channel, not is_final, dropout))

        self.conv_norm_out = nn.GroupNorm(num_channels=boc[0], num_groups=groups, eps=eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(boc[0], cfg["out_channels"], kernel_size=3, padding=1)

    def set_time_projection_dtype(self, dtype):
        """float32 = diffusers; float64 only for exact-value checks of a double model."""
        self.time_proj.dtype = dtype
        return self

    def forward(self, sample, timestep):
        timesteps = timestep
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=torch.long, device=sample.device)
        elif timesteps.dim() == 0:
            timesteps = timesteps[None].to(sample.device)
        timesteps = timesteps * torch.ones(sample.shape[0], dtype=timesteps.dtype, device=timesteps.device)
        t_emb = self.time_proj(timesteps).to(dtype=self.conv_in.weight.dtype)
        emb = self.time_embedding(t_emb)

        sample = self.conv_in(sample)
        down_block_res_samples = (sample,)
        for block in self.down_blocks:
            sample, res_samples = block(sample, emb)
            down_block_res_samples += res_samples
        sample = self.mid_block(sample, emb)
        for block in self.up_blocks:
            res_samples = down_block_res_samples[-len(block.resnets):]
            down_block_res_samples = down_block_res_samples[:-len(block.resnets)]
            sample = block(sample, res_samples, emb)
        sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))
        return sample


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())
