#!/usr/bin/python3
"""Times torchvision's ImageFolder + DataLoader over a folder, epoch by epoch.

Usage: /usr/bin/python3 scripts/bench_torchvision.py ROOT EPOCHS NUM_WORKERS
Prints one JSON line: {"n": samples, "epochs": [seconds, ...]}. The chapter's pipeline:
Compose([Resize(28), ToTensor()]), batch_size=16, shuffle=True; every epoch decodes again.
"""
import json
import sys
import time

import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.transforms import Compose, Resize, ToTensor


def main():
    root, epochs, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(13)
    torch.set_num_threads(2)
    ds = ImageFolder(root=root, transform=Compose([Resize(28), ToTensor()]))
    loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=workers)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        n = 0
        for x, _y in loader:
            n += x.shape[0]
        times.append(time.perf_counter() - t)
    print(json.dumps({"n": n, "epochs": times}))


if __name__ == "__main__":
    main()
