"""Golden fixture for the built-in layers: PyTorch 1.13 outputs and gradients, layer by layer.

Run with Debian's torch: /usr/bin/python3 packages/core/scripts/layers_fixture.py
Writes packages/core/test/fixtures/layers-torch.json (atomically). Each case holds the layer as
our model-spec JSON, the input, the layer's state_dict (parameters and buffers, PyTorch's names
and layouts), the output, and for a random cotangent r the gradients of sum(output * r) with
respect to the input and each parameter; BatchNorm in training mode also records its buffers
after the step (momentum 0.1, unbiased running variance).
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import enc, out_path, write_json  # noqa: E402


def case(name, spec, torch_layer, shape, train=False, scale=1.0, prepare=None):
    x = (torch.randn(*shape) * scale).requires_grad_(True)
    if prepare is not None:
        prepare(torch_layer)
    torch_layer.train(train)
    state_before = {k: enc(v.float()) for k, v in torch_layer.state_dict().items()}
    y = torch_layer(x)
    r = torch.randn(*y.shape)
    (y * r).sum().backward()
    out = {
        "name": name,
        "spec": spec,
        "training": train,
        "x": enc(x),
        "state_dict": state_before,
        "y": enc(y),
        "r": enc(r),
        "dx": enc(x.grad),
        "grads": {k: enc(p.grad) for k, p in torch_layer.named_parameters()},
    }
    if train and len(list(torch_layer.buffers())) > 0:
        out["buffers_after"] = {k: enc(v.float()) for k, v in torch_layer.named_buffers()}
    return out


def randomize_bn(bn):
    with torch.no_grad():
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.num_batches_tracked.fill_(3)


def main(path):
    torch.manual_seed(2026)
    cases = [
        case("conv default", {"type": "Conv2d", "outChannels": 4, "kernelSize": 3},
             nn.Conv2d(3, 4, 3), (2, 3, 8, 8)),
        case("conv stride 2 padding 1", {"type": "Conv2d", "outChannels": 4, "kernelSize": 3, "stride": 2, "padding": 1},
             nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 9, 9)),
        case("conv same dilation 2", {"type": "Conv2d", "outChannels": 2, "kernelSize": 3, "padding": "same", "dilation": 2},
             nn.Conv2d(3, 2, 3, padding="same", dilation=2), (2, 3, 8, 8)),
        case("conv same even kernel", {"type": "Conv2d", "outChannels": 2, "kernelSize": 4, "padding": "same"},
             nn.Conv2d(3, 2, 4, padding="same"), (2, 3, 7, 7)),
        case("conv pairs, strided and dilated, no bias",
             {"type": "Conv2d", "outChannels": 3, "kernelSize": [2, 3], "stride": [2, 1], "padding": [1, 0],
              "dilation": 2, "bias": False},
             nn.Conv2d(3, 3, (2, 3), stride=(2, 1), padding=(1, 0), dilation=2, bias=False), (2, 3, 9, 8)),
        case("linear", {"type": "Linear", "outFeatures": 5}, nn.Linear(12, 5), (4, 12)),
        case("linear no bias", {"type": "Linear", "outFeatures": 5, "bias": False}, nn.Linear(12, 5, bias=False), (4, 12)),
        case("maxpool 2", {"type": "MaxPool2d", "kernelSize": 2}, nn.MaxPool2d(2), (2, 3, 7, 7)),
        case("maxpool 3 stride 2 padding 1", {"type": "MaxPool2d", "kernelSize": 3, "stride": 2, "padding": 1},
             nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 8, 8)),
        case("avgpool 2", {"type": "AvgPool2d", "kernelSize": 2}, nn.AvgPool2d(2), (2, 3, 7, 7)),
        case("avgpool 3 stride 2 padding 1", {"type": "AvgPool2d", "kernelSize": 3, "stride": 2, "padding": 1},
             nn.AvgPool2d(3, stride=2, padding=1), (2, 3, 8, 8)),
        case("avgpool padding, count_include_pad false",
             {"type": "AvgPool2d", "kernelSize": 3, "stride": 2, "padding": 1, "countIncludePad": False},
             nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 3, 8, 8)),
        case("adaptive avgpool 3x2", {"type": "AdaptiveAvgPool2d", "outputSize": [3, 2]},
             nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 7)),
        case("adaptive avgpool 1", {"type": "AdaptiveAvgPool2d", "outputSize": 1}, nn.AdaptiveAvgPool2d(1), (2, 3, 5, 6)),
        case("batchnorm2d train", {"type": "BatchNorm2d"}, nn.BatchNorm2d(3), (4, 3, 5, 5), train=True,
             scale=2.0, prepare=randomize_bn),
        case("batchnorm2d eval", {"type": "BatchNorm2d"}, nn.BatchNorm2d(3), (4, 3, 5, 5), prepare=randomize_bn),
        case("batchnorm2d train, no affine, momentum 0.3",
             {"type": "BatchNorm2d", "affine": False, "momentum": 0.3, "eps": 1e-3},
             nn.BatchNorm2d(3, affine=False, momentum=0.3, eps=1e-3), (2, 3, 4, 4), train=True, prepare=randomize_bn),
        case("batchnorm1d train", {"type": "BatchNorm1d"}, nn.BatchNorm1d(5), (6, 5), train=True, prepare=randomize_bn),
        case("batchnorm1d eval", {"type": "BatchNorm1d"}, nn.BatchNorm1d(5), (6, 5), prepare=randomize_bn),
        case("dropout eval", {"type": "Dropout", "p": 0.4}, nn.Dropout(0.4), (3, 10)),
        case("dropout2d eval", {"type": "Dropout2d", "p": 0.4}, nn.Dropout2d(0.4), (2, 3, 4, 4)),
        case("relu", {"type": "ReLU"}, nn.ReLU(), (3, 10), scale=3.0),
        case("leaky relu", {"type": "LeakyReLU", "negativeSlope": 0.2}, nn.LeakyReLU(0.2), (3, 10), scale=3.0),
        case("leaky relu default", {"type": "LeakyReLU"}, nn.LeakyReLU(), (2, 3, 4, 4), scale=3.0),
        case("elu", {"type": "ELU", "alpha": 0.7}, nn.ELU(0.7), (3, 10), scale=3.0),
        case("gelu", {"type": "GELU"}, nn.GELU(), (3, 10), scale=3.0),
        case("gelu tanh", {"type": "GELU", "approximate": "tanh"}, nn.GELU(approximate="tanh"), (3, 10), scale=3.0),
        case("silu", {"type": "SiLU"}, nn.SiLU(), (3, 10), scale=3.0),
        case("tanh", {"type": "Tanh"}, nn.Tanh(), (3, 10), scale=2.0),
        case("sigmoid", {"type": "Sigmoid"}, nn.Sigmoid(), (3, 10), scale=3.0),
    ]
    # Flatten's output order is the engine's (h, w, c); through a Linear it is PyTorch's model.
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 6))
    cases.append(case("flatten then linear", {"type": "Sequential", "layers": [{"type": "Flatten"},
                                                                           {"type": "Linear", "outFeatures": 6}]},
                      flat, (2, 3, 4, 4)))
    write_json(path, {"torch": torch.__version__, "cases": cases})


if __name__ == "__main__":
    main(out_path("layers-torch.json"))
