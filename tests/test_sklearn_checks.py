"""scikit-learn's own estimator checks on GSRAutoencoder and GSRClassifier.

Each estimator runs the whole suite of ``parametrize_with_checks`` on a fixed grid
("grid:2x2"), a fixed ring ("ring:10") and a learned graph ("learned", a
CoactivationGraph on 10 units), once with a fixed weight and once with a budget, in a few
small epochs. Every check passes: none is listed as an expected failure (scikit-learn
skips check_array_api_input itself unless SCIPY_ARRAY_API=1 is set). The checks include
check_methods_sample_order_invariance and check_methods_subset_invariance, which need a
row's outputs not to depend on the other rows in the call.
"""

import warnings

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from gsreg import GSRAutoencoder, GSRClassifier, graphs

SMALL = dict(batch_size=64, random_state=0, device="cpu", hidden=(8,))
GRAPHS = [
    dict(graph="grid:2x2"),
    dict(graph="ring:10"),
    # 10 units: the learned-graph recipe's kNN graph (k = 8) needs at least 9
    dict(graph="learned", n_structured=10),
]


def autoencoders():
    common = dict(SMALL, latent=2, epochs=3, lr=1e-2)
    for graph in GRAPHS:
        yield GSRAutoencoder(**graph, **common, weight=3e-3, arrange=False)
        yield GSRAutoencoder(**graph, **common)  # the default: a budget (or the recipe)


def classifiers():
    common = dict(SMALL, epochs=10, lr=3e-2)
    for graph in GRAPHS:
        yield GSRClassifier(**graph, **common)  # the default: a fixed weight
        yield GSRClassifier(**graph, **common, weight=None, budget=0.05)


def no_expected_failures(estimator) -> dict[str, str]:
    """Checks expected to fail, with the reason: none."""
    return {}


@pytest.mark.slow
@parametrize_with_checks(
    [*autoencoders(), *classifiers()], expected_failed_checks=no_expected_failures
)
def test_scikit_learn_estimator_checks_pass(estimator, check):
    check(estimator)


def test_the_checked_settings_learn_a_graph_where_the_graph_is_learned():
    # so that the checks above run the learned-graph path, not a fit that gave up on it
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 5)), np.arange(30) % 3
    for est in [*autoencoders(), *classifiers()]:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # "no graph was learned"
            est.fit(X, y)
        assert est.graph_ is not None and est.graph_.n_nodes == (
            10 if est.graph == "learned" else graphs.parse(est.graph).n_nodes
        )
        assert (est.coactivation_ is not None) == (est.graph == "learned")
