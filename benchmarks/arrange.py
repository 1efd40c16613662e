"""gsreg.analysis.arrangement: time and quality against layer width, on one CPU thread.

Units of an h x w grid carry smooth planted maps (20 Gaussian bumps with random amplitudes
per sample, plus noise) and are shuffled; the arrangement should find a placement at least
as smooth as the planted one. Quality is the Dirichlet energy of the standardised
activations (lower is smoother) relative to the planted placement's. The contender, for
n <= 1,024, is scipy's FAQ (``quadratic_assignment``, its default barycentre start and 30
iterations) run alone, in the same process.

    python benchmarks/arrange.py [--quick]
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from _timing import environment, parser, setup, write
from scipy.optimize import quadratic_assignment
from threadpoolctl import threadpool_limits

from gsreg import graphs
from gsreg.analysis import arrangement
from gsreg.analysis._arrangement import _correlation, _laplacian, energy

FULL_SIDES = (8, 16, 32, 64)
QUICK_SIDES = (8, 16)
SAMPLES = 4096
FAQ_CONTENDER_MAX = 1024
TARGET_S = {1024: 10.0, 4096: 60.0}


def planted(side: int, samples: int, seed: int = 0) -> tuple[graphs.Graph, np.ndarray, np.ndarray]:
    """A side x side grid, activations (samples, n) of shuffled units, the planted perm."""
    rng = np.random.default_rng(seed)
    graph = graphs.grid(side, side)
    xy = graph.coords
    centres = rng.uniform([0, -side], [side, 0], size=(20, 2))
    width = side / 6
    bumps = np.exp(-((xy[:, None, :] - centres[None]) ** 2).sum(-1) / (2 * width**2))
    Z = rng.normal(size=(samples, 20)) @ bumps.T + 0.5 * rng.normal(size=(samples, side**2))
    shuffle = rng.permutation(side**2)
    return graph, Z[:, shuffle], np.argsort(shuffle)  # node k holds unit argsort(shuffle)[k]


def measure(side: int, samples: int) -> dict:
    graph, Z, truth = planted(side, samples)
    n = graph.n_nodes
    K, L = _correlation(Z, n), _laplacian(graph)
    start = time.perf_counter()
    perm = arrangement(Z, graph, random_state=0)
    seconds = time.perf_counter() - start
    planted_energy = energy(L, K, truth)
    row = {
        "n": n,
        "samples": samples,
        "seconds": seconds,
        "target_s": TARGET_S.get(n),
        "energy_identity": energy(L, K, np.arange(n)),
        "energy_planted": planted_energy,
        "energy_arranged": energy(L, K, perm),
        "arranged_vs_planted": energy(L, K, perm) / planted_energy,
    }
    if n <= FAQ_CONTENDER_MAX:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            faq = quadratic_assignment(
                L.toarray(), K, method="faq", options={"rng": np.random.default_rng(0)}
            )
        faq_seconds = time.perf_counter() - start
        row |= {
            "faq_seconds": faq_seconds,
            "faq_vs_planted": energy(L, K, faq.col_ind) / planted_energy,
            "seconds_vs_faq": seconds / faq_seconds,
        }
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return row


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    device = setup(args)
    sides = QUICK_SIDES if args.quick else FULL_SIDES
    samples = 512 if args.quick else SAMPLES
    with threadpool_limits(limits=args.threads):
        results = [measure(side, samples) for side in sides]
    config = {
        "graphs": [f"grid:{s}x{s}" for s in sides],
        "samples": samples,
        "bumps": 20,
        "noise": 0.5,
    }
    write("arrange", args, environment(device), config, results)


if __name__ == "__main__":
    main()
