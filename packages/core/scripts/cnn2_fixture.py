"""Golden fixture for CNN2: PyTorch 1.13 weights, inputs, logits and one step's gradients.

Run with Debian's torch: /usr/bin/python3 packages/core/scripts/cnn2_fixture.py
Writes packages/core/test/fixtures/cnn2-torch.json (atomically). The class is the chapter's.
"""
import base64
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class CNN2(nn.Module):
    def __init__(self, n_filters, p=0.0):
        super(CNN2, self).__init__()
        self.n_filters = n_filters
        self.p = p
        self.conv1 = nn.Conv2d(in_channels=3, out_channels=n_filters, kernel_size=3)
        self.conv2 = nn.Conv2d(in_channels=n_filters, out_channels=n_filters, kernel_size=3)
        self.fc1 = nn.Linear(n_filters * 5 * 5, 50)
        self.fc2 = nn.Linear(50, 3)
        self.drop = nn.Dropout(self.p)

    def featurizer(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = F.max_pool2d(x, kernel_size=2)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, kernel_size=2)
        x = nn.Flatten()(x)
        return x

    def classifier(self, x):
        if self.p > 0:
            x = self.drop(x)
        x = self.fc1(x)
        x = F.relu(x)
        if self.p > 0:
            x = self.drop(x)
        x = self.fc2(x)
        return x

    def forward(self, x):
        return self.classifier(self.featurizer(x))


def enc(t):
    """A tensor as {shape, data}: data is base64 of little-endian float32 (exact, compact)."""
    a = t.detach().contiguous().numpy().astype("<f4")
    return {"shape": list(t.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def main(out_path):
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
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(fixture, f)
    os.replace(tmp, out_path)
    print(f"wrote {out_path}: loss {loss.item():.6f}")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "test", "fixtures", "cnn2-torch.json"))
