"""Fixtures for PyTorch weight exchange: two models' state_dicts as safetensors, with an input
batch and PyTorch's eval-mode logits.

Run with Debian's torch: /usr/bin/python3 packages/core/scripts/torch_weights_fixture.py [DIR]
Writes into packages/core/test/fixtures/ (atomically), for MODEL in cnn2, bn:
- torch-MODEL.safetensors: `model.state_dict()` exactly as PyTorch holds it (names, layouts,
  float32, BatchNorm's num_batches_tracked as int64), metadata {"format": "pt"} only, like a
  user's file;
- torch-MODEL-io.safetensors: `x` [4, 3, 28, 28] and `logits` (eval mode), with the model as our
  spec JSON (`stepwise.model`) and its input shape (`stepwise.inputShape`).

`cnn2` is the chapter's CNN2(n_filters=5, p=0.3); `bn` an nn.Sequential with Conv2d,
BatchNorm2d, LeakyReLU, AvgPool2d, Flatten, Linear and BatchNorm1d whose running statistics
come from a few train-mode forwards (non-trivial means, variances and counts).
"""
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CNN2, HERE, write_safetensors  # noqa: E402

INPUT_SHAPE = [3, 28, 28]

CNN2_SPEC = {"preset": "CNN2", "nFilters": 5, "p": 0.3}

BN_SPEC = {"layers": [
    {"type": "Conv2d", "outChannels": 4, "kernelSize": 3, "padding": 1},
    {"type": "BatchNorm2d"},
    {"type": "LeakyReLU", "negativeSlope": 0.1},
    {"type": "AvgPool2d", "kernelSize": 2},
    {"type": "Conv2d", "outChannels": 6, "kernelSize": 3},
    {"type": "BatchNorm2d"},
    {"type": "LeakyReLU"},
    {"type": "AvgPool2d", "kernelSize": 2},
    {"type": "Flatten"},
    {"type": "Linear", "outFeatures": 16},
    {"type": "BatchNorm1d"},
    {"type": "ReLU"},
    {"type": "Linear", "outFeatures": 3},
]}


def bn_model():
    """BN_SPEC in PyTorch (28 -> conv pad 1: 28 -> pool 14 -> conv 12 -> pool 6: 6 * 6 * 6)."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.1), nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6), nn.LeakyReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(216, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def build(name):
    """A fresh model by fixture name (what torch_load_check.py loads exported weights into)."""
    return CNN2(n_filters=5, p=0.3) if name == "cnn2" else bn_model()


def spec_of(name):
    return CNN2_SPEC if name == "cnn2" else BN_SPEC


def prepare_bn(model):
    # Affine parameters away from 1 / 0, and running statistics from three train-mode batches
    # whose mean and scale are not 0 and 1, so every buffer carries information.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        model.train()
        for _ in range(3):
            model(torch.randn(8, *INPUT_SHAPE) * 2.0 + 0.5)


def main(folder):
    for name, seed in (("cnn2", 13), ("bn", 2026)):
        torch.manual_seed(seed)
        model = build(name)
        if name == "bn":
            prepare_bn(model)
        x = torch.randn(4, *INPUT_SHAPE)
        model.eval()
        with torch.no_grad():
            logits = model(x)
        write_safetensors(os.path.join(folder, f"torch-{name}.safetensors"), model.state_dict(),
                          {"format": "pt"})
        write_safetensors(os.path.join(folder, f"torch-{name}-io.safetensors"), {"x": x, "logits": logits},
                          {"stepwise.model": json.dumps(spec_of(name)),
                           "stepwise.inputShape": json.dumps(INPUT_SHAPE), "torch": torch.__version__})
        print(f"wrote torch-{name}: {', '.join(model.state_dict().keys())}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "test", "fixtures"))
