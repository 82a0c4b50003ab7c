"""Golden fixture: PyTorch 1.13 trains CNN2 on the real bundled Rock Paper Scissors images.

Run with Debian's torch: /usr/bin/python3 packages/core/scripts/rps_trajectory_fixture.py
Writes packages/core/test/fixtures/rps-trajectory-torch.json (atomically).

The chapter's data preparation (Resize(28), ToTensor, the normalizer from the training set),
CNN2(5, p=0) initialised by torch.manual_seed(13), Adam(3e-4), one epoch of 158 mini-batches of
16 in ImageFolder order (no shuffling, no dropout: nothing random after the initialisation), then
the validation loss. Records the initial state_dict, every mini-batch loss, the epoch losses.
"""
import base64
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.transforms import Compose, Resize, ToTensor

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from acceptance_torch import make_normalizer  # noqa: E402
from cnn2_fixture import CNN2  # noqa: E402


def enc(t):
    a = t.detach().contiguous().numpy().astype("<f4")
    return {"shape": list(t.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def main(out_path):
    torch.set_num_threads(2)
    root = os.path.join(here, "..", "..", "data", "assets", "rps-28")
    temp = ImageFolder(root=f"{root}/rps", transform=Compose([Resize(28), ToTensor()]))
    normalizer = make_normalizer(DataLoader(temp, batch_size=16))
    composer = Compose([Resize(28), ToTensor(), normalizer])
    train = ImageFolder(root=f"{root}/rps", transform=composer)
    val = ImageFolder(root=f"{root}/rps-test-set", transform=composer)
    torch.manual_seed(13)
    model = CNN2(n_filters=5, p=0.0)
    init = {k: enc(v) for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    loss_fn = nn.CrossEntropyLoss()
    batch_losses = []
    model.train()
    for x, y in DataLoader(train, batch_size=16):
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        batch_losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        val_loss = float(np.mean([loss_fn(model(x), y).item() for x, y in DataLoader(val, batch_size=16)]))
    fixture = {
        "torch": torch.__version__,
        "init": init,
        "batchLosses": batch_losses,
        "loss": float(np.mean(batch_losses)),
        "valLoss": val_loss,
    }
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(fixture, f)
    os.replace(tmp, out_path)
    print(f"wrote {out_path}: loss {fixture['loss']:.6f} val {val_loss:.6f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "test", "fixtures", "rps-trajectory-torch.json"))
