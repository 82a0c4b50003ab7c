"""Golden fixture for CNN2: PyTorch 1.13 weights, inputs, logits and one step's gradients.

Run with Debian's torch: /usr/bin/python3 packages/core/scripts/cnn2_fixture.py
Writes packages/core/test/fixtures/cnn2-torch.json (atomically). The class is the chapter's
(in common.py, shared with the other scripts).
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CNN2, enc, out_path, write_json  # noqa: E402


def main(path):
    torch.manual_seed(13)
    model = CNN2(n_filters=5, p=0.3)
    x = torch.randn(16, 3, 28, 28)
    y = torch.randint(0, 3, (16,))
    # Eval mode: dropout off, so the numbers depend on the weights only (not torch's RNG).
    model.eval()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    fixture = {
        "torch": torch.__version__,
        "nFilters": 5,
        "p": 0.3,
        "state_dict": {
            k: enc(v) for k, v in model.state_dict().items()
        },
        "x": enc(x),
        "y": y.tolist(),
        "logits": enc(logits),
        "loss": loss.item(),
        "grads": {k: enc(p.grad) for k, p in model.named_parameters()},
    }
    write_json(path, fixture)
    print(f"wrote {path}: loss {loss.item():.6f}")


if __name__ == "__main__":
    main(out_path("cnn2-torch.json"))
