"""PyTorch side of `packages/cli/bench/train.mjs` (Debian's python3-torch 1.13, 2 threads).

Usage: /usr/bin/python3 bench_cli_torch.py MODE ROOT EPOCHS
  ROOT   folder holding rps/ and rps-test-set/ (the CLI's bundled rps-28, or a copy)
  MODE   cached: the chapter's data preparation, the images decoded ONCE into tensors, then
                 EPOCHS epochs of training + validation; reports each epoch's seconds.
         book:   the book's pipeline as written: ImageFolder + DataLoader decoding every epoch,
                 EPOCHS epochs of training + validation (the caller times the whole process).
Both: CNN2(5, p=0.3), Adam lr 3e-4, batch 16, seed 13. Prints one JSON line.
"""
import json
import sys
import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import CNN2, rps_datasets, train_epoch, validation_loss  # noqa: E402


def main():
    mode, root, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(2)
    torch.manual_seed(13)
    t0 = time.perf_counter()
    train_data, val_data = rps_datasets(root)
    if mode == "cached":
        train_set = TensorDataset(torch.stack([x for x, _ in train_data]), torch.tensor([y for _, y in train_data]))
        val_set = TensorDataset(torch.stack([x for x, _ in val_data]), torch.tensor([y for _, y in val_data]))
    else:
        train_set, val_set = train_data, val_data
    train_loader = DataLoader(train_set, batch_size=16, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=16)
    data_seconds = time.perf_counter() - t0
    model = CNN2(n_filters=5, p=0.3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    loss_fn = nn.CrossEntropyLoss()
    seconds = []
    for _ in range(epochs):
        e0 = time.perf_counter()
        train_epoch(model, loss_fn, optimizer, train_loader)
        validation_loss(model, loss_fn, val_loader)
        seconds.append(time.perf_counter() - e0)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dataSeconds": data_seconds,
        "epochSeconds": seconds,
    }))


if __name__ == "__main__":
    main()
