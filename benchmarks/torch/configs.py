"""The models and cases of the PyTorch comparison, shared by the driver and the validation.

fashion: diffusion4j's TrainCommand.defaultConfig() (the Java runner prints its config JSON; the driver checks
         it equals this one after diffusers' defaults are filled in) — 28x28x1, block_out_channels 32/64/64,
         one layer per block, attention at the lowest resolution (and in the mid block), 8 norm groups.
cifar10: google/ddpm-cifar10-32's architecture, read from the config diffusers wrote
         (src/library/src/test/resources/crosscheck/ddpm-cifar10-32.json); both sides load that file.
"""

import json
import os
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CIFAR10_JSON = os.path.join(REPO, "src", "library", "src", "test", "resources", "crosscheck", "ddpm-cifar10-32.json")

FASHION = dict(
    sample_size=28, in_channels=1, out_channels=1, block_out_channels=[32, 64, 64], layers_per_block=1,
    norm_num_groups=8, down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
    up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"])

# diffusion4j's and diffusers' parameter counts (the driver also checks the Java side's)
PARAMS = {"fashion": 1_112_801, "cifar10": 35_746_307}


def fashion_config():
    return json.loads(json.dumps(FASHION))


def cifar10_config():
    with open(CIFAR10_JSON) as f:
        return json.load(f)["config"]


def model_config(model):
    return {"fashion": fashion_config, "cifar10": cifar10_config}[model]()


def sample_hw(config):
    s = config["sample_size"]
    return (s, s) if isinstance(s, int) else tuple(s)


# kind "train": one optimisation step (noising, forward, loss, backward, grad-norm clip, AdamW, EMA);
# kind "denoise": one sampling step (inference forward + the DDPM scheduler update)
Case = namedtuple("Case", "name model kind batch")
CASES = [
    Case("fashion-train-b64", "fashion", "train", 64),
    Case("fashion-denoise-b1", "fashion", "denoise", 1),
    Case("fashion-denoise-b16", "fashion", "denoise", 16),
    Case("cifar10-train-b8", "cifar10", "train", 8),
    Case("cifar10-denoise-b8", "cifar10", "denoise", 8),
]
