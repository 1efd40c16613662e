"""Test-wide settings: one torch thread per worker (the suite runs two workers on two cores)."""

import os

import matplotlib
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
matplotlib.use("Agg")
torch.set_num_threads(1)
