"""Golden fixture for the training loop: PyTorch 1.13 runs StepByStep's loop for two epochs.

Run with Debian's torch: /usr/bin/python3 packages/core/scripts/trajectory_fixture.py
Writes packages/core/test/fixtures/trajectory-torch.json (atomically).

CNN2(5, p=0) (no dropout, so torch's RNG does not enter), 4 fixed mini-batches of 8 images in a
fixed order (no shuffling), 2 epochs, then the validation loss on 2 more batches. Two recipes:
Adam(lr 3e-3), and the chapter's SGD(lr 0.03, momentum 0.9, Nesterov) + CyclicLR(1e-3..1e-2,
step_size_up = 4 = one epoch, triangular2) stepped after every mini-batch (momentum cycling on).
Recorded: initial state_dict, inputs, every mini-batch loss, the epoch losses, validation losses,
learning rates per epoch (after the scheduler) and the final state_dict.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from torch.optim.lr_scheduler import CyclicLR

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CNN2, enc, out_path, train_epoch, validation_loss, write_json  # noqa: E402


def run(recipe, init, batches, val):
    model = CNN2(n_filters=5, p=0.0)
    model.load_state_dict(init)
    loss_fn = nn.CrossEntropyLoss()
    if recipe == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        sched = None
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, nesterov=True)
        sched = CyclicLR(opt, base_lr=1e-3, max_lr=1e-2, step_size_up=len(batches), mode="triangular2")
    batch_losses, losses, val_losses, lrs = [], [], [], []
    for _ in range(2):
        epoch = train_epoch(model, loss_fn, opt, batches, sched)
        batch_losses += epoch
        losses.append(float(np.mean(epoch)))
        val_losses.append(validation_loss(model, loss_fn, val))
        lrs.append(opt.param_groups[0]["lr"])
    return {
        "batchLosses": batch_losses,
        "losses": losses,
        "valLosses": val_losses,
        "learningRates": lrs,
        "final": {k: enc(v) for k, v in model.state_dict().items()},
    }


def main(path):
    torch.manual_seed(7)
    init = CNN2(n_filters=5, p=0.0).state_dict()
    x = torch.randn(48, 3, 28, 28)
    y = torch.randint(0, 3, (48,))
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
    val = [(x[i : i + 8], y[i : i + 8]) for i in range(32, 48, 8)]
    fixture = {
        "torch": torch.__version__,
        "init": {k: enc(v) for k, v in init.items()},
        "x": enc(x),
        "y": y.tolist(),
        "adam": run("adam", init, batches, val),
        "sgd": run("sgd", init, batches, val),
    }
    write_json(path, fixture)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(out_path("trajectory-torch.json"))
