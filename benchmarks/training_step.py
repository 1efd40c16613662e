"""Training steps per second of the paper's MNIST models: no regulariser, a fixed grid:8x8
GSR, and a learned (co-activation) graph updated every 100 steps, update cost included.

A step is forward, task loss (+ reg.penalty()), zero_grad, backward, Adam step (+ reg.step()).
Steps are timed in blocks of ``update_every`` steps, so every block of the learned variant
holds exactly one graph update; the variants' blocks are interleaved.

    autoencoder  DenseAutoencoder(784, (50, 50), 16, (64, 50)), batch 500, Adam(1e-4, eps 1e-5),
                 MSE; GSR on "decoder.0" (64 neurons)
    classifier   ConvClassifier(hidden=64), batch 128, Adam(1e-3), cross-entropy; GSR on "fc"

    python benchmarks/training_step.py [--quick] [--device cuda] [--models autoencoder]
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from _timing import environment, parser, race, setup, write

from gsreg import CoactivationGraph, GraphRegularizer, graphs
from gsreg.models import ConvClassifier, DenseAutoencoder

MODELS = {
    "autoencoder": {
        "build": lambda: DenseAutoencoder(784, (50, 50), 16, (64, 50)),
        "layer": "decoder.0",
        "batch": 500,
        "lr": 1e-4,
        "eps": 1e-5,
        "task": "reconstruction",
        "repeats": 30,
    },
    "classifier": {
        "build": lambda: ConvClassifier(hidden=64),
        "layer": "fc",
        "batch": 128,
        "lr": 1e-3,
        "eps": 1e-8,
        "task": "classification",
        "repeats": 10,
    },
}
VARIANTS = ("none", "grid", "learned")
WEIGHT = 1e-3


def load_data(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The first n MNIST training images (N, 784) in [0, 1] and labels, or uniform noise
    where MNIST is not available."""
    try:
        from gsreg.datasets import mnist

        data = mnist()
        return data.X_train[:n], data.y_train[:n], "mnist"
    except Exception:  # noqa: BLE001 - any failure: timing does not depend on the pixels
        rng = np.random.default_rng(0)
        return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n), "uniform noise"


def make_step(spec: dict, variant: str, X, y, device, update_every: int):
    """A closure running one training step, and the regulariser (or None)."""
    torch.manual_seed(0)
    model = spec["build"]().to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"], eps=spec["eps"])
    reg = None
    if variant == "grid":
        reg = GraphRegularizer(model, {spec["layer"]: graphs.grid(8, 8)}, weight=WEIGHT)
    elif variant == "learned":
        learned = CoactivationGraph(kernel="knn", k=5, update_every=update_every)
        reg = GraphRegularizer(model, {spec["layer"]: learned}, weight=WEIGHT)
    batch, n = spec["batch"], len(X)
    reconstruction = spec["task"] == "reconstruction"
    state = {"begin": 0}

    def step():
        begin = state["begin"]
        state["begin"] = (begin + batch) % (n - batch + 1)
        xb = X[begin : begin + batch]
        out = model(xb)
        if reconstruction:
            loss = F.mse_loss(out, xb)
        else:
            loss = F.cross_entropy(out, y[begin : begin + batch])
        if reg is not None:
            loss = loss + reg.penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if reg is not None:
            reg.step()

    return step, reg


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="autoencoder,classifier")
    args = p.parse_args()
    device = setup(args)
    env = environment(device)
    update_every = 10 if args.quick else 100
    X_np, y_np, source = load_data(10_000)
    X = torch.as_tensor(X_np, device=device)
    y = torch.as_tensor(y_np, device=device).long()
    config = {
        "models": {},
        "variants": list(VARIANTS),
        "weight": WEIGHT,
        "grid": "grid:8x8",
        "learned": {"kernel": "knn", "k": 5, "update_every": update_every, "buffer_size": 1024},
        "block_steps": update_every,
        "data": f"{source}, {len(X_np)} samples",
    }
    results = {}
    for name in args.models.split(","):
        spec = MODELS[name]
        repeats = args.repeats or (3 if args.quick else spec["repeats"])
        config["models"][name] = {k: v for k, v in spec.items() if k != "build"} | {
            "repeats": repeats,
            "layer_width": 64,
        }
        steps, regs = {}, {}
        for variant in VARIANTS:
            steps[variant], regs[variant] = make_step(spec, variant, X, y, device, update_every)

        def block(step):
            def run():
                for _ in range(update_every):
                    step()

            return run

        blocks = {v: block(s) for v, s in steps.items()}
        # warm-up: one block each, so that the learned graph has its first graph before timing
        times = race(blocks, repeats, 1, device)
        learned = regs["learned"].learned_graphs()[spec["layer"]]
        base = times.summary("none", update_every)
        rows = {}
        for variant in times:
            s = times.summary(variant, update_every)
            s["steps_per_s"] = 1.0 / s["median_s"]
            s["ratio_to_none"] = times.ratio(variant, "none")
            s["cpu_ratio_to_none"] = times.ratio(variant, "none", cpu=True)
            s["ratio_of_medians"] = s["median_s"] / base["median_s"]
            rows[variant] = s
        rows["learned"]["graph_updates"] = learned.n_updates
        rows["learned"]["components"] = learned.n_components
        results[name] = rows
        print(
            f"{name}: "
            + ", ".join(
                f"{v} {r['steps_per_s']:.1f} steps/s ({r['ratio_to_none']:.3f}x)"
                for v, r in rows.items()
            ),
            flush=True,
        )
    write("training_step", args, env, config, results)


if __name__ == "__main__":
    main()
