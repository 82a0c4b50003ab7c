"""PyTorch side of `npm run bench -w packages/core`: CNN2 training step (batch 16, Adam) timing.

Prints one JSON line: {"torch": version, "threads": n, "msPerStep": median, "sPerEpoch": ...}.
Usage: /usr/bin/python3 bench_torch.py [steps] [repeats] [threads]
"""
import json
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import CNN2  # noqa: E402


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    torch.manual_seed(0)
    model = CNN2(n_filters=5, p=0.3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    loss_fn = nn.CrossEntropyLoss()
    n_train, n_val, batch = 2520, 372, 16
    x = torch.randn(n_train, 3, 28, 28)
    y = torch.randint(0, 3, (n_train,))
    xv = torch.randn(n_val, 3, 28, 28)

    def step(i):
        j = (i * batch) % (n_train - batch)
        model.train()
        loss = loss_fn(model(x[j : j + batch]), y[j : j + batch])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    for i in range(30):
        step(i)
    per_step = []
    cpu_per_step = []
    for r in range(repeats):
        t0 = time.perf_counter()
        c0 = time.process_time()
        for i in range(steps):
            step(i)
        per_step.append((time.perf_counter() - t0) * 1000 / steps)
        cpu_per_step.append((time.process_time() - c0) * 1000 / steps)
    epochs = []
    for r in range(3):
        t0 = time.perf_counter()
        perm = torch.randperm(n_train)
        for b in range(0, n_train, batch):
            idx = perm[b : b + batch]
            model.train()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            loss.item()
        model.eval()
        with torch.no_grad():
            for b in range(0, n_val, batch):
                model(xv[b : b + batch])
        epochs.append(time.perf_counter() - t0)
    per_step.sort()
    cpu_per_step.sort()
    epochs.sort()
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "msPerStep": per_step[len(per_step) // 2],
        "cpuMsPerStep": cpu_per_step[len(cpu_per_step) // 2],
        "sPerEpoch": epochs[len(epochs) // 2],
    }))


if __name__ == "__main__":
    main()
