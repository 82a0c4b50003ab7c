"""PyTorch side of the acceptance run: the chapter's two recipes on the same image files.

Usage: /usr/bin/python3 packages/core/scripts/acceptance_torch.py ROOT SEEDS [EPOCHS]
  ROOT   folder holding rps/ and rps-test-set/ (e.g. packages/data/assets/rps-28)
  SEEDS  comma-separated torch.manual_seed values (the chapter uses 13)
Prints one JSON line: {"adam": [correct per seed], "sgd": [...], "total": 372}.
The code follows the chapter (StepByStep's train loop, make_normalizer, CyclicLR per batch).
"""
import json
import sys

import torch
import torch.nn as nn
import torch.optim as optim
from torch.optim.lr_scheduler import CyclicLR
from torch.utils.data import DataLoader

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import CNN2, rps_datasets, train_epoch, validation_loss  # noqa: E402


def correct(model, loader):
    model.eval()
    right, total = 0, 0
    with torch.no_grad():
        for x, y in loader:
            right += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return right, total


def train(model, loss_fn, optimizer, scheduler, train_loader, val_loader, epochs):
    for _ in range(epochs):
        train_epoch(model, loss_fn, optimizer, train_loader, scheduler)
        validation_loss(model, loss_fn, val_loader)


def main():
    root, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    torch.set_num_threads(2)
    train_data, val_data = rps_datasets(root)
    # Decode once (the transforms are deterministic), as the TypeScript side does.
    train_x = torch.stack([x for x, _ in train_data])
    train_y = torch.tensor([y for _, y in train_data])
    val_x = torch.stack([x for x, _ in val_data])
    val_y = torch.tensor([y for _, y in val_data])
    train_set = torch.utils.data.TensorDataset(train_x, train_y)
    val_loader = DataLoader(torch.utils.data.TensorDataset(val_x, val_y), batch_size=16)
    out = {"adam": [], "sgd": [], "total": len(val_data), "torch": torch.__version__}
    for seed in seeds:
        torch.manual_seed(seed)
        model = CNN2(n_filters=5, p=0.3)
        opt = optim.Adam(model.parameters(), lr=3e-4)
        train_loader = DataLoader(train_set, batch_size=16, shuffle=True)
        train(model, nn.CrossEntropyLoss(), opt, None, train_loader, val_loader, epochs)
        out["adam"].append(correct(model, val_loader)[0])

        torch.manual_seed(seed)
        model = CNN2(n_filters=5, p=0.5)
        opt = optim.SGD(model.parameters(), lr=0.03, momentum=0.9, nesterov=True)
        train_loader = DataLoader(train_set, batch_size=16, shuffle=True)
        sched = CyclicLR(opt, base_lr=1e-3, max_lr=0.01, step_size_up=len(train_loader), mode="triangular2")
        train(model, nn.CrossEntropyLoss(), opt, sched, train_loader, val_loader, epochs)
        out["sgd"].append(correct(model, val_loader)[0])
        print(json.dumps({"seed": seed, "adam": out["adam"][-1], "sgd": out["sgd"][-1]}), file=sys.stderr, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
