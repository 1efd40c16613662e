"""GSR with Lightning on the CPU: a small autoencoder on the scikit-learn digits whose first
decoder layer (64 neurons) is laid out on an 8x8 grid.

    pip install gsreg[lightning]
    python examples/lightning_cpu.py                 # GSR and a plain baseline, 30 epochs
    python examples/lightning_cpu.py --weight 1e-2 --epochs 10 --no-baseline

Prints, on the test images, the reconstruction MSE and, for the regularised layer, the grid
penalty mean_b z_b^T L z_b, its mean-centred Rayleigh quotient (scale-free, lower is smoother:
0 for a constant map, about 3.5 for white noise on this grid) and the root mean square
activation (the plain penalty can also be lowered by shrinking activations).
"""

from __future__ import annotations

import argparse
import warnings

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from gsreg import GraphPenalty, graphs
from gsreg.datasets import digits
from gsreg.integrations.lightning import GSRCallback
from gsreg.models import DenseAutoencoder

LAYER = "model.decoder.0"  # names as in LightningModule.named_modules()
GRID = graphs.grid(8, 8)


class DigitsAutoencoder(pl.LightningModule):
    """64 -> 64 -> 16 -> 64 (GSR here) -> 64 pixels, LeakyReLU 0.2, sigmoid output."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.model = DenseAutoencoder(
            64, hidden=(64,), latent=16, decoder_hidden=(64,), output_activation="sigmoid"
        )
        self.lr = lr

    def training_step(self, batch, batch_idx):
        (x,) = batch
        mse = F.mse_loss(self.model(x), x)
        self.log("train/mse", mse)
        return mse + self.gsr.penalty()  # the callback sets self.gsr during fit

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def evaluate(module: DigitsAutoencoder, x: torch.Tensor) -> dict[str, float]:
    """Test MSE; of the regularised layer: the grid penalty, its scale-free form (the
    mean-centred Rayleigh quotient, which shrinking activations cannot lower) and the RMS
    activation."""
    model = module.model.eval()
    with torch.no_grad():
        hidden = model.decoder[0](model.encode(x))
        mse = F.mse_loss(model.decode(model.encode(x)), x)
    return {
        "test_mse": mse.item(),
        "penalty": GraphPenalty(GRID)(hidden).item(),
        "rayleigh": GraphPenalty(GRID, normalize="centered")(hidden).item(),
        "act_rms": hidden.pow(2).mean().sqrt().item(),
    }


def train(weight: float, data, epochs: int, seed: int) -> dict[str, float]:
    pl.seed_everything(seed, verbose=False)
    x_train = torch.as_tensor(data.X_train)
    loader = DataLoader(
        TensorDataset(x_train),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    module = DigitsAutoencoder()
    # weight 0 (the baseline) collects nothing; training_step still finds self.gsr
    callbacks = [GSRCallback({LAYER: GRID}, weight=weight)]
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader)
    return evaluate(module, torch.as_tensor(data.X_test))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight", type=float, default=1e-4, help="GSR weight (lambda)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None, help="train on a subset")
    parser.add_argument("--no-baseline", action="store_true", help="skip the weight-0 run")
    args = parser.parse_args(argv)

    data = digits(seed=args.seed)
    if args.n_train is not None:
        data = data.subset(n_train=args.n_train, seed=args.seed)
    warnings.filterwarnings("ignore", message=".*does not have many workers")
    torch.set_num_threads(min(2, torch.get_num_threads()))

    result = train(args.weight, data, args.epochs, args.seed)
    runs = [(f"GSR grid 8x8 (weight {args.weight:g})", result)]
    if not args.no_baseline:
        result["baseline"] = train(0.0, data, args.epochs, args.seed)
        runs.insert(0, ("no GSR", result["baseline"]))
    print(
        f"digits autoencoder, {len(data.X_train)} train / {len(data.X_test)} test images, "
        f"{args.epochs} epochs, GSR on {LAYER}"
    )
    for label, r in runs:
        print(
            f"  {label:<28} test MSE {r['test_mse']:.4f}   grid penalty {r['penalty']:8.3f}"
            f"   Rayleigh {r['rayleigh']:.3f}   act RMS {r['act_rms']:.3f}"
        )
    return result


if __name__ == "__main__":
    main()
