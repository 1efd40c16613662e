"""gsreg.training.fit against a minimal hand-written torch loop: the loop's overhead ratio.

Both train the same MNIST autoencoder (DenseAutoencoder(784, (50, 50), 16, (64, 50))) on the
same in-memory data with Adam(1e-4, eps 1e-5), batch 500, shuffled each epoch, for the same
number of steps; one measurement is one call (optimiser creation included). Without a
regulariser, and with a fixed grid:8x8 GSR on "decoder.0" (the hand loop adds
``reg.penalty()`` and calls ``reg.step()``; fit also gathers ``reg.logs()`` every step).

    python benchmarks/fit_overhead.py [--quick] [--device cuda]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from _timing import environment, parser, race, setup, write
from training_step import load_data

from gsreg import GraphRegularizer, graphs
from gsreg.models import DenseAutoencoder
from gsreg.training import fit

BATCH, LR, EPS, WEIGHT = 500, 1e-4, 1e-5, 1e-3


def hand_loop(model, X, epochs: int, reg=None, seed: int = 0) -> None:
    """The minimal loop: shuffle, slice, forward, loss, backward, Adam step."""
    opt = torch.optim.Adam(model.parameters(), lr=LR, eps=EPS)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=gen).to(X.device)
        for begin in range(0, len(X), BATCH):
            xb = X[perm[begin : begin + BATCH]]
            loss = F.mse_loss(model(xb), xb)
            if reg is not None:
                loss = loss + reg.penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if reg is not None:
                reg.step()


def contender(kind: str, regularised: bool, X, epochs: int, device):
    torch.manual_seed(0)
    model = DenseAutoencoder(784, (50, 50), 16, (64, 50)).to(device)
    reg = None
    if regularised:
        reg = GraphRegularizer(model, {"decoder.0": graphs.grid(8, 8)}, weight=WEIGHT)
    if kind == "fit":
        return lambda: fit(
            model,
            X,
            regularizer=reg,
            epochs=epochs,
            batch_size=BATCH,
            lr=LR,
            eps=EPS,
            device=device,
            progress=False,
        )
    return lambda: hand_loop(model, X, epochs, reg)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    device = setup(args)
    env = environment(device)
    n_samples, epochs = (2000, 1) if args.quick else (10_000, 5)
    repeats = args.repeats or (3 if args.quick else 15)
    X_np, _, source = load_data(n_samples)
    X = torch.as_tensor(X_np, device=device)
    steps = epochs * -(-n_samples // BATCH)
    config = {
        "model": "DenseAutoencoder(784, (50, 50), 16, (64, 50))",
        "batch": BATCH,
        "lr": LR,
        "eps": EPS,
        "epochs": epochs,
        "steps_per_call": steps,
        "data": f"{source}, {n_samples} samples",
        "repeats": repeats,
        "regularizer": f"grid:8x8 on decoder.0, weight {WEIGHT}",
    }
    results = {}
    for setting, regularised in (("plain", False), ("regularised", True)):
        fns = {k: contender(k, regularised, X, epochs, device) for k in ("hand", "fit")}
        times = race(fns, repeats, 1, device)
        hand = times.summary("hand")
        rows = {}
        for kind in times:
            s = times.summary(kind, steps)
            s["seconds_per_call"] = times.summary(kind)["median_s"]
            s["ratio_to_hand"] = times.ratio(kind, "hand")
            s["cpu_ratio_to_hand"] = times.ratio(kind, "hand", cpu=True)
            s["ratio_of_medians"] = s["seconds_per_call"] / hand["median_s"]
            rows[kind] = s
        results[setting] = rows
        hand_ms, fit_ms = rows["hand"]["median_s"] * 1e3, rows["fit"]["median_s"] * 1e3
        ratio = rows["fit"]["ratio_to_hand"]
        print(f"{setting}: hand {hand_ms:.3g} ms/step, fit {fit_ms:.3g} ms/step ({ratio:.3f}x)")
    write("fit_overhead", args, env, config, results)


if __name__ == "__main__":
    main()
