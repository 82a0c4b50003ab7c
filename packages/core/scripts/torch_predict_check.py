"""PyTorch's logits for image files, from a state_dict that `stepwise export --format torch` wrote.

/usr/bin/python3 packages/core/scripts/torch_predict_check.py WEIGHTS FILE...

The model is rebuilt in PyTorch from the file's own metadata (`stepwise.model`: a layer list or
the CNN2 preset), loaded with strict=True; each image goes through torchvision's
Resize/ToTensor/Normalize with the file's `mean` and `std`, as the chapter's composer does.
Prints one JSON line: {"logits": [[...] per file], "classes": [...]}. Independent of stepwise's
code, so equal logits mean the export, the model spec and the preprocessing all agree.
"""
import json
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
from PIL import Image
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CNN2, read_safetensors  # noqa: E402


def pair(v):
    return tuple(v) if isinstance(v, list) else v


def layer(spec, state, prefix):
    """One layer of a spec, with the input sizes read off the state_dict's shapes."""
    t = spec["type"]
    if t == "Conv2d":
        w = state[prefix + ".weight"]
        padding = spec.get("padding", 0)
        return nn.Conv2d(w.shape[1], spec["outChannels"], pair(spec["kernelSize"]),
                         stride=pair(spec.get("stride", 1)),
                         padding=padding if isinstance(padding, str) else pair(padding),
                         dilation=pair(spec.get("dilation", 1)), bias=spec.get("bias", True))
    if t == "Linear":
        w = state[prefix + ".weight"]
        return nn.Linear(w.shape[1], spec["outFeatures"], bias=spec.get("bias", True))
    if t in ("BatchNorm1d", "BatchNorm2d"):
        n = state.get(prefix + ".running_mean", state.get(prefix + ".weight")).shape[0]
        cls = nn.BatchNorm1d if t == "BatchNorm1d" else nn.BatchNorm2d
        return cls(n, eps=spec.get("eps", 1e-5), momentum=spec.get("momentum", 0.1),
                   affine=spec.get("affine", True),
                   track_running_stats=spec.get("trackRunningStats", True))
    if t == "MaxPool2d":
        return nn.MaxPool2d(pair(spec["kernelSize"]), stride=pair(spec.get("stride")),
                            padding=pair(spec.get("padding", 0)))
    if t == "AvgPool2d":
        return nn.AvgPool2d(pair(spec["kernelSize"]), stride=pair(spec.get("stride")),
                            padding=pair(spec.get("padding", 0)),
                            count_include_pad=spec.get("countIncludePad", True))
    if t == "AdaptiveAvgPool2d":
        return nn.AdaptiveAvgPool2d(pair(spec["outputSize"]))
    simple = {
        "Dropout": lambda: nn.Dropout(spec.get("p", 0.5)),
        "Dropout2d": lambda: nn.Dropout2d(spec.get("p", 0.5)),
        "Flatten": nn.Flatten, "ReLU": nn.ReLU, "SiLU": nn.SiLU, "Tanh": nn.Tanh,
        "Sigmoid": nn.Sigmoid,
        "LeakyReLU": lambda: nn.LeakyReLU(spec.get("negativeSlope", 0.01)),
        "ELU": lambda: nn.ELU(spec.get("alpha", 1.0)),
        "GELU": lambda: nn.GELU(approximate=spec.get("approximate", "none")),
    }
    return simple[t]()


def build(model_spec, state):
    if "preset" in model_spec:
        return CNN2(n_filters=model_spec["nFilters"], p=model_spec.get("p", 0.0))
    layers = OrderedDict()
    for i, spec in enumerate(model_spec["layers"]):
        name = spec.get("name", str(i))
        layers[name] = layer(spec, state, name)
    return nn.Sequential(layers)


def main(weights_path, files):
    state, metadata = read_safetensors(weights_path)
    model = build(json.loads(metadata["stepwise.model"]), state)
    model.load_state_dict(state, strict=True)
    model.eval()
    _, h, w = json.loads(metadata["stepwise.inputShape"])
    mean, std = json.loads(metadata["mean"]), json.loads(metadata["std"])
    composer = transforms.Compose([
        transforms.Resize((h, w)), transforms.ToTensor(), transforms.Normalize(mean, std)])
    x = torch.stack([composer(Image.open(f).convert("RGB")) for f in files])
    with torch.no_grad():
        logits = model(x)
    print(json.dumps({"logits": logits.tolist(), "classes": json.loads(metadata["classes"])}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
