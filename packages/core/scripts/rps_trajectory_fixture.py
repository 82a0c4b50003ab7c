"""Golden fixture: PyTorch 1.13 trains CNN2 on the real bundled Rock Paper Scissors images.

Run with Debian's torch: /usr/bin/python3 packages/core/scripts/rps_trajectory_fixture.py
Writes packages/core/test/fixtures/rps-trajectory-torch.json (atomically).

The chapter's data preparation (Resize(28), ToTensor, the normalizer from the training set),
CNN2(5, p=0) initialised by torch.manual_seed(13), Adam(3e-4), one epoch of 158 mini-batches of
16 in ImageFolder order (no shuffling, no dropout: nothing random after the initialisation), then
the validation loss. Records the initial state_dict, every mini-batch loss, the epoch losses.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from common import CNN2, enc, out_path, rps_datasets, train_epoch, validation_loss, write_json  # noqa: E402


def main(path):
    torch.set_num_threads(2)
    train, val = rps_datasets(os.path.join(here, "..", "..", "data", "assets", "rps-28"))
    torch.manual_seed(13)
    model = CNN2(n_filters=5, p=0.0)
    init = {k: enc(v) for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    loss_fn = nn.CrossEntropyLoss()
    batch_losses = train_epoch(model, loss_fn, optimizer, DataLoader(train, batch_size=16))
    val_loss = validation_loss(model, loss_fn, DataLoader(val, batch_size=16))
    fixture = {
        "torch": torch.__version__,
        "init": init,
        "batchLosses": batch_losses,
        "loss": float(np.mean(batch_losses)),
        "valLoss": val_loss,
    }
    write_json(path, fixture)
    print(f"wrote {path}: loss {fixture['loss']:.6f} val {val_loss:.6f}")


if __name__ == "__main__":
    main(out_path("rps-trajectory-torch.json"))
