#!/usr/bin/python3
"""Golden fixtures for @stepwise/data, computed with torchvision 0.14 / Pillow / torch 1.13.

Run from packages/data:  /usr/bin/python3 scripts/make_fixtures.py
Writes test/fixtures/images/*.png (inputs) and test/fixtures/torchvision.json (expected outputs).
"""
import base64
import json
import os

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset, random_split
from torchvision.datasets import ImageFolder
from torchvision.transforms import CenterCrop, Compose, Resize, ToTensor

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)
FIX = os.path.join(PKG, "test", "fixtures")
IMG = os.path.join(FIX, "images")
RPS = os.path.join(PKG, "assets", "rps-28")
os.makedirs(IMG, exist_ok=True)


def b64(arr):
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def make_inputs():
    """Deterministic input images covering the modes ImageFolder meets."""
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:300, 0:300]
    # A 300x300 RGBA picture like the full-size RPS images: smooth shapes, noise, and an alpha
    # channel that is not uniform (so composite-vs-drop would differ).
    rgb = np.stack(
        [
            (128 + 127 * np.sin(xx / 17.0) * np.cos(yy / 23.0)),
            (xx * 255.0 / 299),
            (255 - yy * 255.0 / 299),
        ],
        axis=-1,
    ) + rng.normal(0, 12, (300, 300, 3))
    alpha = np.where((xx - 150) ** 2 + (yy - 150) ** 2 < 120**2, 255, rng.randint(0, 255, (300, 300)))
    rgba = np.concatenate([np.clip(rgb, 0, 255), alpha[..., None]], axis=-1).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(os.path.join(IMG, "rgba300.png"))
    # Non-square RGB, both up- and down-sampling axes.
    Image.fromarray(rng.randint(0, 256, (53, 37, 3)).astype(np.uint8), "RGB").save(os.path.join(IMG, "rgb37x53.png"))
    # Grayscale and grayscale+alpha.
    Image.fromarray((xx[:40, :64] * 4 % 256).astype(np.uint8), "L").save(os.path.join(IMG, "gray64x40.png"))
    la = np.stack([(yy[:20, :20] * 12 % 256), rng.randint(0, 256, (20, 20))], axis=-1).astype(np.uint8)
    Image.fromarray(la, "LA").save(os.path.join(IMG, "la20.png"))
    # A JPEG, decoded by libjpeg in both worlds (compared with a tolerance).
    Image.fromarray(np.clip(rgb[:120, :160], 0, 255).astype(np.uint8), "RGB").save(
        os.path.join(IMG, "photo160x120.jpg"), quality=92
    )


def pil_rgb(path):
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


def resize_cases():
    cases = []
    specs = [
        ("rgba300.png", 28),
        ("rgba300.png", (20, 33)),
        ("rgba300.png", 150),
        ("rgb37x53.png", 28),
        ("rgb37x53.png", 90),
        ("rgb37x53.png", (53, 37)),
        ("gray64x40.png", 28),
        ("la20.png", 28),
        ("photo160x120.jpg", 28),
        (os.path.join("..", "..", "..", "assets", "rps-28", "rps", "rock", "rock01-000.png"), 28),
        (os.path.join("..", "..", "..", "assets", "rps-28", "rps", "rock", "rock01-000.png"), 14),
        (os.path.join("..", "..", "..", "assets", "rps-28", "rps", "rock", "rock01-000.png"), 50),
    ]
    seen = set()
    for name, size in specs:
        img = pil_rgb(os.path.join(IMG, name))
        # The decoded RGB input once per file (it checks decoding + convert('RGB') on its own).
        input_rgb = None if name in seen else b64(np.asarray(img))
        seen.add(name)
        out = Resize(size)(img)
        arr = np.asarray(out)
        cases.append(
            {
                "file": name,
                "size": size if isinstance(size, int) else list(size),
                "inputRgb": input_rgb,
                "width": out.width,
                "height": out.height,
                "rgb": b64(arr),
            }
        )
    crop = CenterCrop(24)(pil_rgb(os.path.join(IMG, "rgb37x53.png")))
    crop_big = CenterCrop((60, 41))(pil_rgb(os.path.join(IMG, "rgb37x53.png")))
    return cases, [
        {"file": "rgb37x53.png", "size": 24, "width": crop.width, "height": crop.height, "rgb": b64(np.asarray(crop))},
        {
            "file": "rgb37x53.png",
            "size": [60, 41],
            "width": crop_big.width,
            "height": crop_big.height,
            "rgb": b64(np.asarray(crop_big)),
        },
    ]


def statistics_per_channel(images, labels):
    n_samples, n_channels, n_height, n_weight = images.size()
    flatten_per_channel = images.reshape(n_samples, n_channels, -1)
    means = flatten_per_channel.mean(axis=2)
    stds = flatten_per_channel.std(axis=2)
    sum_means = means.sum(axis=0)
    sum_stds = stds.sum(axis=0)
    n_samples = torch.tensor([n_samples] * n_channels).float()
    return torch.stack([n_samples, sum_means, sum_stds], axis=0)


def loader_apply(loader, func, reduce="sum"):
    results = [func(x, y) for i, (x, y) in enumerate(loader)]
    results = torch.stack(results, axis=0)
    if reduce == "sum":
        results = results.sum(axis=0)
    elif reduce == "mean":
        results = results.float().mean(axis=0)
    return results


def rps_statistics():
    ds = ImageFolder(root=os.path.join(RPS, "rps"), transform=Compose([Resize(28), ToTensor()]))
    loader = DataLoader(ds, batch_size=16)
    first_x, first_y = next(iter(loader))
    totals = loader_apply(loader, statistics_per_channel)
    test = ImageFolder(root=os.path.join(RPS, "rps-test-set"))
    rel = lambda p: os.path.relpath(p, RPS)
    return {
        "classes": ds.classes,
        "trainPaths": [rel(p) for p, _ in ds.samples],
        "testPaths": [rel(p) for p, _ in test.samples],
        "firstBatch": statistics_per_channel(first_x, first_y).tolist(),
        "firstBatchLabels": first_y.tolist(),
        # ToTensor values of the first training image (float32, CHW).
        "firstImage": b64(first_x[0].numpy().astype(np.float32)),
        "totals": totals.tolist(),
        "mean": (totals[1] / totals[0]).tolist(),
        "std": (totals[2] / totals[0]).tolist(),
    }


def linear_regression():
    # The book's data_generation/simple_linear_regression.py and data_preparation/v2.py.
    true_b, true_w, N = 1, 2, 100
    np.random.seed(42)
    x = np.random.rand(N, 1)
    epsilon = 0.1 * np.random.randn(N, 1)
    y = true_b + true_w * x + epsilon
    torch.manual_seed(13)
    x_tensor = torch.as_tensor(x).float()
    y_tensor = torch.as_tensor(y).float()
    dataset = TensorDataset(x_tensor, y_tensor)
    n_train = int(len(dataset) * 0.8)
    train_data, val_data = random_split(dataset, [n_train, len(dataset) - n_train])
    torch.manual_seed(7)
    perm = torch.randperm(37).tolist()
    return {
        "x": x[:, 0].tolist(),
        "y": y[:, 0].tolist(),
        "trainIndices": list(train_data.indices),
        "valIndices": list(val_data.indices),
        "randperm37seed7": perm,
    }


def main():
    make_inputs()
    resize, center_crop = resize_cases()
    out = {
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "PIL": Image.__version__},
        "resize": resize,
        "centerCrop": center_crop,
        "rps": rps_statistics(),
        "linearRegression": linear_regression(),
    }
    with open(os.path.join(FIX, "torchvision.json"), "w") as f:
        json.dump(out, f)
    print("wrote", os.path.join(FIX, "torchvision.json"))


if __name__ == "__main__":
    main()
