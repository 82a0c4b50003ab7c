"""Loads weights we exported into the PyTorch model and compares its logits with ours.

/usr/bin/python3 packages/core/scripts/torch_load_check.py MODEL WEIGHTS IO
MODEL is cnn2 or bn (see torch_weights_fixture.py); WEIGHTS our exported state_dict (loaded
with strict=True, so a missing, unexpected or misshapen tensor fails); IO a safetensors file
with `x` and our eval-mode `logits`. Prints one JSON line: the names PyTorch loaded, the
metadata, and the largest absolute difference of PyTorch's logits from ours.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import read_safetensors  # noqa: E402
from torch_weights_fixture import build  # noqa: E402


def main(name, weights_path, io_path):
    state, metadata = read_safetensors(weights_path)
    io, _ = read_safetensors(io_path)
    model = build(name)
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(io["x"])
    print(json.dumps({
        "names": list(state.keys()),
        "dtypes": {k: str(v.dtype) for k, v in state.items()},
        "metadata": metadata,
        "maxAbsDiff": (logits - io["logits"]).abs().max().item(),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:4])
