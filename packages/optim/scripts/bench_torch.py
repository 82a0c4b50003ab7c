"""torch.optim timings for @stepwise/optim's benchmark (called by bench/optimizers.mjs).

Reads a JSON job on argv[1]: {"sizes": {name: [[shape], ...]}, "optimizers": {name: config}, "seconds": s}
and prints {"torch": version, "threads": n, "results": [{optimizer, size, msPerStep}]} on stdout.
"""
import json
import sys
import time

import torch

job = json.loads(sys.argv[1])
torch.manual_seed(0)


def make(name, config, params):
    c = dict(config)
    tag = c.pop("_tag")
    kw = {{"weightDecay": "weight_decay"}.get(k, k): (tuple(v) if k == "betas" else v) for k, v in c.items()}
    cls = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW,
           "RMSprop": torch.optim.RMSprop, "Adagrad": torch.optim.Adagrad}[tag]
    return cls(params, **kw)


results = []
for size, shapes in job["sizes"].items():
    for name, config in job["optimizers"].items():
        params = [torch.nn.Parameter(torch.randn(*s)) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p)
        opt = make(name, config, params)
        with torch.no_grad():
            for _ in range(10):
                opt.step()
            times, start = [], time.perf_counter()
            while time.perf_counter() - start < job["seconds"] or len(times) < 5:
                t0 = time.perf_counter()
                opt.step()
                times.append(time.perf_counter() - t0)
        times.sort()
        # the median step, like the node side
        results.append({"optimizer": name, "size": size, "msPerStep": 1000 * times[len(times) // 2]})
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}))
