"""PyTorch side of `bench/epoch.ts`: one StepByStep epoch on cached tensors, timed.

The chapter's loop: shuffled mini-batches of 16 (train mode, loss.item() every step, Adam
lr 3e-4, CNN2(5, p=0.3)), then the validation losses without gradients in eval mode.
Prints one JSON line: {"torch": version, "threads": n, "sPerEpoch": median, "epochs": [...]}.
Usage: /usr/bin/python3 epoch_torch.py [repeats] [threads]
"""
import json
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import CNN2, train_epoch, validation_loss  # noqa: E402


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    torch.manual_seed(13)
    x, y = torch.randn(2520, 3, 28, 28), torch.randint(0, 3, (2520,))
    xv, yv = torch.randn(372, 3, 28, 28), torch.randint(0, 3, (372,))
    train_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)
    val_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=16)
    model = CNN2(n_filters=5, p=0.3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
        losses = train_epoch(model, loss_fn, optimizer, train_loader)
        return np.mean(losses), validation_loss(model, loss_fn, val_loader)

    epoch()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t0)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "sPerEpoch": sorted(times)[len(times) // 2],
        "epochs": times,
    }))


if __name__ == "__main__":
    main()
