"""What the PyTorch scripts share: the chapter's CNN2, the fixture encoding and writing, the
StepByStep training and validation loops, and the Rock Paper Scissors data preparation.

Imported by the scripts beside it (each puts this folder on sys.path first), so every one of
them still runs on its own with Debian's torch: /usr/bin/python3 packages/core/scripts/NAME.py
"""
import base64
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


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


def out_path(fixture_name):
    """The first command-line argument, else packages/core/test/fixtures/<fixture_name>."""
    return sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "test", "fixtures", fixture_name)


def write_json(path, fixture):
    """Writes `fixture` as JSON to `path` atomically (a temporary file, then a rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(fixture, f)
    os.replace(tmp, path)


def train_epoch(model, loss_fn, optimizer, batches, scheduler=None):
    """StepByStep's training epoch: train mode, one step per mini-batch (the scheduler, if any,
    stepped after each); returns every mini-batch loss."""
    model.train()
    losses = []
    for x, y in batches:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if scheduler is not None:
            scheduler.step()
    return losses


def validation_loss(model, loss_fn, batches):
    """StepByStep's validation: eval mode, no gradients, the mean of the mini-batch losses."""
    model.eval()
    with torch.no_grad():
        return float(np.mean([loss_fn(model(x), y).item() for x, y in batches]))


def make_normalizer(loader):
    """The chapter's normalizer: per-channel means and standard deviations over the images."""
    from torchvision.transforms import Normalize

    n, means, stds = 0, 0, 0
    for images, _ in loader:
        flat = images.reshape(images.size(0), images.size(1), -1)
        n += images.size(0)
        means = means + flat.mean(axis=2).sum(axis=0)
        stds = stds + flat.std(axis=2).sum(axis=0)
    return Normalize(mean=means / n, std=stds / n)


def rps_datasets(root):
    """The chapter's data preparation of Rock Paper Scissors under `root`: Resize(28), ToTensor
    and the normalizer of the training set; returns (train, validation) ImageFolders."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import Compose, Resize, ToTensor

    temp = ImageFolder(root=f"{root}/rps", transform=Compose([Resize(28), ToTensor()]))
    normalizer = make_normalizer(DataLoader(temp, batch_size=16))
    composer = Compose([Resize(28), ToTensor(), normalizer])
    train = ImageFolder(root=f"{root}/rps", transform=composer)
    val = ImageFolder(root=f"{root}/rps-test-set", transform=composer)
    return train, val


# safetensors by hand (the Python package is not installed with Debian's torch): 8 bytes of
# little-endian header length, a JSON header (dtype, shape, data_offsets; `__metadata__` a
# string map), then the raw little-endian values, in header order without gaps.
ST_DTYPES = {torch.float32: ("F32", "<f4"), torch.float64: ("F64", "<f8"), torch.int64: ("I64", "<i8"),
             torch.int32: ("I32", "<i4")}


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} (sorted by name) and string metadata to `path` atomically."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        dtype, np_dtype = ST_DTYPES[t.dtype]
        blob = t.numpy().astype(np_dtype).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file (the dtypes of ST_DTYPES)."""
    by_name = {v[0]: v[1] for v in ST_DTYPES.values()}
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        a = np.frombuffer(data[begin:end], dtype=by_name[e["dtype"]]).reshape(e["shape"])
        tensors[name] = torch.from_numpy(a.copy())
    return tensors, metadata
