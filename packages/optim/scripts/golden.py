"""Golden trajectories from PyTorch for @stepwise/optim's tests.

Run by hand with Debian's python3-torch 1.13 (never by the tests):
    /usr/bin/python3 packages/optim/scripts/golden.py
Writes packages/optim/test/fixtures/{optimizers,schedulers}.json. Configs are written in
stepwise's camelCase form (the tagged OptimizerConfig / SchedulerConfig), so the tests feed
them to fromConfig unchanged.
"""
import json
import math
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures")
SHAPES = {"fc1.weight": [3, 4], "fc1.bias": [3]}
STEPS = 8
SLOT_NAMES = {
    "momentum_buffer": "momentumBuffer",
    "exp_avg": "expAvg",
    "exp_avg_sq": "expAvgSq",
    "max_exp_avg_sq": "maxExpAvgSq",
    "square_avg": "squareAvg",
    "grad_avg": "gradAvg",
    "sum": "sum",
}


def torch_optimizer(config, params):
    c = dict(config)
    tag = c.pop("_tag")
    kw = {}
    rename = {"weightDecay": "weight_decay", "lrDecay": "lr_decay",
              "initialAccumulatorValue": "initial_accumulator_value"}
    for k, v in c.items():
        kw[rename.get(k, k)] = tuple(v) if k == "betas" else v
    if tag != "SGD":
        kw["foreach"] = False
    cls = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW,
           "RMSprop": torch.optim.RMSprop, "Adagrad": torch.optim.Adagrad}[tag]
    return cls(params, **kw)


def encode(t):
    return [float(x) for x in t.detach().double().flatten().tolist()]


def optimizer_case(name, config, grad_scale=1.0, zero_at=(), hypers=None, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    params = {k: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype) for k, s in SHAPES.items()}
    initial = {k: {"shape": list(p.shape), "values": encode(p)} for k, p in params.items()}
    grads = []
    for t in range(STEPS):
        grads.append({k: (torch.zeros(*s) if t in zero_at else torch.randn(*s, generator=g, dtype=torch.float64) * grad_scale).to(dtype)
                      for k, s in SHAPES.items()})
    ps = [torch.nn.Parameter(params[k].clone()) for k in SHAPES]
    opt = torch_optimizer(config, ps)
    trajectory = []
    for t in range(STEPS):
        group = opt.param_groups[0]
        if hypers is not None:
            h = hypers[t]
            group["lr"] = h["lr"]
            if "momentum" in h:
                group["momentum"] = h["momentum"]
            if "beta1" in h:
                group["betas"] = (h["beta1"], group["betas"][1])
        for p, k in zip(ps, SHAPES):
            p.grad = grads[t][k].clone()
        opt.step()
        slots = {}
        step = None
        for p, k in zip(ps, SHAPES):
            for key, value in opt.state[p].items():
                if key == "step":
                    step = int(value.item()) if torch.is_tensor(value) else int(value)
                elif value is not None:
                    slots.setdefault(SLOT_NAMES[key], {})[k] = encode(value)
        trajectory.append({"params": {k: encode(p) for p, k in zip(ps, SHAPES)}, "step": step, "slots": slots})
    return {
        "name": name,
        "config": config,
        "dtype": "float64" if dtype == torch.float64 else "float32",
        "params": initial,
        "grads": [{k: encode(v) for k, v in gs.items()} for gs in grads],
        "hypers": hypers,
        "trajectory": trajectory,
    }


def optimizer_cases():
    sched = [{"lr": 0.1 * (0.7 ** t)} for t in range(STEPS)]
    cyc_m = [{"lr": 0.05 + 0.01 * t, "momentum": 0.9 - 0.02 * t} for t in range(STEPS)]
    cyc_b = [{"lr": 0.01 + 0.002 * t, "beta1": 0.95 - 0.02 * t} for t in range(STEPS)]
    configs = [
        ("sgd plain", {"_tag": "SGD", "lr": 0.1}, {}),
        ("sgd momentum", {"_tag": "SGD", "lr": 0.05, "momentum": 0.9}, {}),
        ("sgd momentum dampening", {"_tag": "SGD", "lr": 0.05, "momentum": 0.9, "dampening": 0.9}, {}),
        ("sgd nesterov", {"_tag": "SGD", "lr": 0.05, "momentum": 0.9, "nesterov": True}, {}),
        ("sgd weight decay maximize", {"_tag": "SGD", "lr": 0.05, "momentum": 0.5, "weightDecay": 0.1, "maximize": True}, {}),
        ("sgd nesterov decay scheduled", {"_tag": "SGD", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weightDecay": 0.01}, {"hypers": cyc_m}),
        ("sgd zero grads", {"_tag": "SGD", "lr": 0.1, "momentum": 0.9}, {"zero_at": (0, 1, 2, 3, 4, 5, 6, 7)}),
        ("adam defaults", {"_tag": "Adam"}, {}),
        ("adam lr 0.1", {"_tag": "Adam", "lr": 0.1}, {}),
        ("adam amsgrad", {"_tag": "Adam", "lr": 0.01, "amsgrad": True}, {"zero_at": (3, 4)}),
        ("adam weight decay maximize", {"_tag": "Adam", "lr": 0.01, "weightDecay": 0.1, "maximize": True}, {}),
        ("adam betas eps", {"_tag": "Adam", "lr": 0.01, "betas": [0.5, 0.9], "eps": 1e-3}, {}),
        ("adam tiny grads", {"_tag": "Adam", "lr": 0.01}, {"grad_scale": 1e-6}),
        ("adam huge grads", {"_tag": "Adam", "lr": 0.01, "amsgrad": True}, {"grad_scale": 1e3}),
        ("adam beta1 cycled", {"_tag": "Adam", "lr": 0.01}, {"hypers": cyc_b}),
        ("adamw defaults", {"_tag": "AdamW"}, {}),
        ("adamw decay scheduled", {"_tag": "AdamW", "lr": 0.1, "weightDecay": 0.5, "amsgrad": True}, {"hypers": sched}),
        ("rmsprop defaults", {"_tag": "RMSprop"}, {}),
        ("rmsprop centered momentum", {"_tag": "RMSprop", "lr": 0.01, "centered": True, "momentum": 0.9}, {}),
        ("rmsprop decay alpha", {"_tag": "RMSprop", "lr": 0.01, "alpha": 0.9, "weightDecay": 0.1, "eps": 1e-4}, {}),
        ("rmsprop centered maximize", {"_tag": "RMSprop", "lr": 0.01, "centered": True, "maximize": True}, {"zero_at": (2,)}),
        ("adagrad defaults", {"_tag": "Adagrad"}, {}),
        ("adagrad lr decay accumulator", {"_tag": "Adagrad", "lr": 0.1, "lrDecay": 0.1, "initialAccumulatorValue": 0.5}, {}),
        ("adagrad decay maximize", {"_tag": "Adagrad", "lr": 0.1, "weightDecay": 0.1, "maximize": True, "eps": 1e-3}, {"hypers": sched}),
        # edge cases
        ("sgd lr 0", {"_tag": "SGD", "lr": 0.0, "momentum": 0.9, "weightDecay": 0.1}, {}),
        ("sgd momentum starts late", {"_tag": "SGD", "lr": 0.1}, {"hypers": [{"lr": 0.1, "momentum": 0.0 if t < 3 else 0.9} for t in range(STEPS)]}),
        ("adam beta1 0", {"_tag": "Adam", "lr": 0.01, "betas": [0.0, 0.5]}, {}),
        ("adam zero grads first", {"_tag": "Adam", "lr": 0.01, "amsgrad": True}, {"zero_at": (0, 1)}),
        ("rmsprop momentum only", {"_tag": "RMSprop", "lr": 0.01, "momentum": 0.5, "alpha": 0.5}, {}),
        ("adagrad zero grads accumulator", {"_tag": "Adagrad", "lr": 0.1, "initialAccumulatorValue": 0.1}, {"zero_at": (0, 5)}),
    ]
    cases = []
    for i, (name, config, kw) in enumerate(configs):
        for dtype in (torch.float64, torch.float32):
            cases.append(optimizer_case(name, config, seed=100 + i, dtype=dtype, **kw))
    return cases


# ---------------------------------------------------------------- schedulers
S = torch.optim.lr_scheduler


def make_scheduler(config, opt, steps_per_epoch):
    c = config
    tag = c["_tag"]
    if tag == "StepLR":
        return S.StepLR(opt, c["stepSize"], gamma=c.get("gamma", 0.1))
    if tag == "MultiStepLR":
        return S.MultiStepLR(opt, c["milestones"], gamma=c.get("gamma", 0.1))
    if tag == "ExponentialLR":
        return S.ExponentialLR(opt, c["gamma"])
    if tag == "CosineAnnealingLR":
        return S.CosineAnnealingLR(opt, c["tMax"], eta_min=c.get("etaMin", 0.0))
    if tag == "CosineAnnealingWarmRestarts":
        return S.CosineAnnealingWarmRestarts(opt, c["t0"], T_mult=c.get("tMult", 1), eta_min=c.get("etaMin", 0.0))
    if tag == "ReduceLROnPlateau":
        return S.ReduceLROnPlateau(opt, mode=c.get("mode", "min"), factor=c.get("factor", 0.1),
                                   patience=c.get("patience", 10), threshold=c.get("threshold", 1e-4),
                                   threshold_mode=c.get("thresholdMode", "rel"), cooldown=c.get("cooldown", 0),
                                   min_lr=c.get("minLr", 0.0), eps=c.get("eps", 1e-8))
    if tag == "CyclicLR":
        unit = steps_per_epoch if c.get("unit", "batches") == "epochs" else 1
        down = c.get("stepSizeDown")
        return S.CyclicLR(opt, c["baseLr"], c["maxLr"], step_size_up=c.get("stepSizeUp", 2000) * unit,
                          step_size_down=None if down is None else down * unit, mode=c.get("mode", "triangular"),
                          gamma=c.get("gamma", 1.0), cycle_momentum=c.get("cycleMomentum", True),
                          base_momentum=c.get("baseMomentum", 0.8), max_momentum=c.get("maxMomentum", 0.9))
    if tag == "OneCycleLR":
        kw = {"total_steps": c["totalSteps"]} if "totalSteps" in c else {"epochs": c["epochs"], "steps_per_epoch": steps_per_epoch}
        return S.OneCycleLR(opt, c["maxLr"], pct_start=c.get("pctStart", 0.3), anneal_strategy=c.get("annealStrategy", "cos"),
                            cycle_momentum=c.get("cycleMomentum", True), base_momentum=c.get("baseMomentum", 0.85),
                            max_momentum=c.get("maxMomentum", 0.95), div_factor=c.get("divFactor", 25.0),
                            final_div_factor=c.get("finalDivFactor", 1e4), three_phase=c.get("threePhase", False), **kw)
    if tag == "SequentialLR":
        subs = [make_scheduler(s, opt, steps_per_epoch) for s in c["schedulers"]]
        return S.SequentialLR(opt, subs, c["milestones"])
    if tag == "ChainedScheduler":
        return S.ChainedScheduler([make_scheduler(s, opt, steps_per_epoch) for s in c["schedulers"]])
    raise ValueError(tag)


LAMBDAS = {
    # names the TS tests map to the same functions
    "pow095": lambda e: 0.95 ** e,
    "step3half": lambda e: 0.5 ** (e // 3),
    "warmup": lambda e: min(1.0, (e + 1) / 5),
}


def scheduler_case(name, config, steps, optimizer="SGD", metrics=None, epochs=None, steps_per_epoch=1):
    p = torch.nn.Parameter(torch.zeros(1))
    if optimizer == "SGD":
        opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    else:
        opt = torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.999))
    if config["_tag"] == "LambdaLR":
        sched = S.LambdaLR(opt, LAMBDAS[config["lambda"]])
    else:
        sched = make_scheduler(config, opt, steps_per_epoch)

    def hyper():
        g = opt.param_groups[0]
        h = {"lr": g["lr"]}
        if optimizer == "SGD":
            h["momentum"] = g["momentum"]
        else:
            h["beta1"] = g["betas"][0]
        return h

    values = [hyper()]
    for t in range(steps):
        if metrics is not None:
            sched.step(metrics[t])
        elif epochs is not None:
            sched.step(epochs[t])
        else:
            sched.step()
        values.append(hyper())
    return {"name": name, "config": config, "optimizer": optimizer, "base": values[0] if config["_tag"] in ("ReduceLROnPlateau",) else None,
            "stepsPerEpoch": steps_per_epoch, "metrics": metrics, "epochs": epochs, "values": values}


def scheduler_cases():
    flat = [1.0] * 30
    noisy = [1.0, 0.9, 0.95, 0.9, 0.91, 0.9, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75, 0.76, 0.77,
             0.78, 0.79, 0.8, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87]
    rising = [0.1 * t for t in range(30)]
    negative = [-1.0, -1.0001, -1.00005, -1.2, -1.2, -1.2, -1.2, -1.2, -1.2, -1.2] * 3
    frac = [e + i / 4 for e in range(12) for i in range(4)]
    return [
        scheduler_case("step", {"_tag": "StepLR", "stepSize": 3, "gamma": 0.5}, 20),
        scheduler_case("step defaults", {"_tag": "StepLR", "stepSize": 1}, 8),
        scheduler_case("multistep repeated", {"_tag": "MultiStepLR", "milestones": [2, 5, 5, 9], "gamma": 0.5}, 15),
        scheduler_case("multistep milestone 0", {"_tag": "MultiStepLR", "milestones": [0, 3], "gamma": 0.5}, 6),
        scheduler_case("step gamma 1", {"_tag": "StepLR", "stepSize": 2, "gamma": 1.0}, 6),
        scheduler_case("cosine tmax 1", {"_tag": "CosineAnnealingLR", "tMax": 1, "etaMin": 0.01}, 6),
        scheduler_case("warm restarts t0 1", {"_tag": "CosineAnnealingWarmRestarts", "t0": 1, "tMult": 3}, 20),
        scheduler_case("cyclic unit steps", {"_tag": "CyclicLR", "baseLr": 0.01, "maxLr": 0.1, "stepSizeUp": 1}, 8),
        scheduler_case("onecycle three phase no momentum", {"_tag": "OneCycleLR", "maxLr": 0.1, "totalSteps": 10, "pctStart": 0.5, "threePhase": True, "cycleMomentum": False}, 10),
        scheduler_case("multistep unsorted", {"_tag": "MultiStepLR", "milestones": [8, 3], "gamma": 0.1}, 12),
        scheduler_case("exponential", {"_tag": "ExponentialLR", "gamma": 0.9}, 20),
        scheduler_case("lambda pow", {"_tag": "LambdaLR", "lambda": "pow095"}, 15),
        scheduler_case("lambda step", {"_tag": "LambdaLR", "lambda": "step3half"}, 15),
        scheduler_case("lambda warmup", {"_tag": "LambdaLR", "lambda": "warmup"}, 10),
        scheduler_case("cosine past tmax", {"_tag": "CosineAnnealingLR", "tMax": 10, "etaMin": 0.001}, 35),
        scheduler_case("cosine eta 0", {"_tag": "CosineAnnealingLR", "tMax": 7}, 30),
        scheduler_case("plateau flat patience 4", {"_tag": "ReduceLROnPlateau", "patience": 4}, 30, metrics=flat),
        scheduler_case("plateau noisy cooldown", {"_tag": "ReduceLROnPlateau", "patience": 2, "factor": 0.5, "cooldown": 2, "minLr": 0.01}, 30, metrics=noisy),
        scheduler_case("plateau max abs", {"_tag": "ReduceLROnPlateau", "mode": "max", "thresholdMode": "abs", "threshold": 0.15, "patience": 1, "factor": 0.5}, 30, metrics=rising),
        scheduler_case("plateau negative rel", {"_tag": "ReduceLROnPlateau", "patience": 1, "factor": 0.5, "threshold": 1e-3}, 30, metrics=negative),
        scheduler_case("plateau eps", {"_tag": "ReduceLROnPlateau", "patience": 0, "factor": 0.5, "minLr": 0.02, "eps": 0.03}, 12, metrics=flat[:12]),
        scheduler_case("cyclic triangular", {"_tag": "CyclicLR", "baseLr": 0.001, "maxLr": 0.01, "stepSizeUp": 4}, 30),
        scheduler_case("cyclic triangular2 epochs", {"_tag": "CyclicLR", "baseLr": 0.001, "maxLr": 0.01, "stepSizeUp": 1, "mode": "triangular2", "unit": "epochs"}, 60, steps_per_epoch=5),
        scheduler_case("cyclic exp_range asym", {"_tag": "CyclicLR", "baseLr": 0.01, "maxLr": 0.1, "stepSizeUp": 3, "stepSizeDown": 7, "mode": "exp_range", "gamma": 0.97}, 45),
        scheduler_case("cyclic no momentum", {"_tag": "CyclicLR", "baseLr": 0.01, "maxLr": 0.1, "stepSizeUp": 5, "cycleMomentum": False}, 25),
        scheduler_case("onecycle cos", {"_tag": "OneCycleLR", "maxLr": 0.1, "totalSteps": 30}, 30),
        scheduler_case("onecycle linear three phase", {"_tag": "OneCycleLR", "maxLr": 0.1, "totalSteps": 40, "annealStrategy": "linear", "threePhase": True, "pctStart": 0.25}, 40),
        scheduler_case("onecycle adam epochs", {"_tag": "OneCycleLR", "maxLr": 0.01, "epochs": 4, "divFactor": 10.0, "finalDivFactor": 100.0, "pctStart": 0.4}, 28, optimizer="Adam", steps_per_epoch=7),
        scheduler_case("warm restarts", {"_tag": "CosineAnnealingWarmRestarts", "t0": 3, "etaMin": 0.001}, 20),
        scheduler_case("warm restarts tmult", {"_tag": "CosineAnnealingWarmRestarts", "t0": 2, "tMult": 2}, 40),
        scheduler_case("warm restarts fractional", {"_tag": "CosineAnnealingWarmRestarts", "t0": 2, "tMult": 2, "etaMin": 0.01}, len(frac), epochs=frac),
        scheduler_case("warm restarts fractional tmult 1", {"_tag": "CosineAnnealingWarmRestarts", "t0": 3}, len(frac), epochs=frac),
        scheduler_case("sequential", {"_tag": "SequentialLR", "schedulers": [{"_tag": "ExponentialLR", "gamma": 0.5}, {"_tag": "CosineAnnealingLR", "tMax": 6}], "milestones": [3]}, 15),
        scheduler_case("sequential three", {"_tag": "SequentialLR", "schedulers": [{"_tag": "StepLR", "stepSize": 2, "gamma": 0.5}, {"_tag": "ExponentialLR", "gamma": 0.9}, {"_tag": "MultiStepLR", "milestones": [1, 3]}], "milestones": [4, 9]}, 16),
        scheduler_case("chained", {"_tag": "ChainedScheduler", "schedulers": [{"_tag": "ExponentialLR", "gamma": 0.9}, {"_tag": "StepLR", "stepSize": 3, "gamma": 0.5}]}, 15),
        # Up to tMax only: past it torch's cosine recursion takes an additive branch that drops the
        # other schedulers' factors; stepwise's chain stays a product of factors.
        scheduler_case("chained cosine", {"_tag": "ChainedScheduler", "schedulers": [{"_tag": "CosineAnnealingLR", "tMax": 10}, {"_tag": "MultiStepLR", "milestones": [2, 4], "gamma": 0.5}]}, 10),
    ]


def main():
    torch.set_default_dtype(torch.float64)
    os.makedirs(OUT, exist_ok=True)
    meta = {"torch": torch.__version__}
    with open(os.path.join(OUT, "optimizers.json"), "w") as f:
        json.dump({"meta": meta, "cases": optimizer_cases()}, f)
    with open(os.path.join(OUT, "schedulers.json"), "w") as f:
        json.dump({"meta": meta, "cases": scheduler_cases()}, f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
