"""The cluster-indication study: quick smoke run, one real recovery, read-outs."""

import dataclasses
import json
import math

import numpy as np
import pytest

from gsreg import GSRAutoencoder
from gsreg.experiments import cluster_indication as ci


@pytest.fixture(scope="module")
def quick_result():
    return ci.run_study(ci.ClusterIndicationConfig.quick(), progress=False)


def test_quick_study_rows_have_the_promised_keys_and_sane_values(quick_result):
    config = ci.ClusterIndicationConfig.quick()
    rows = quick_result["rows"]
    assert len(rows) == len(ci.jobs(config)) == len(config.datasets) * len(config.settings)
    assert {(r["dataset"], r["n_modules"], r["setting"]) for r in rows} == {
        (kind, n, s) for kind, n in config.datasets for s in config.settings
    }
    for row in rows:
        assert set(ci.ROW_KEYS) <= set(row)
        assert row["components"] >= 1
        assert row["exact"] == (row["components"] == row["planted"])
        # the estimator's defaults structure its own 64-unit layer
        width = GSRAutoencoder().n_structured if row["setting"] == "defaults" else config.width
        assert sum(row["module_sizes"]) == width
        assert -1 <= row["ari"] <= 1 and 0 <= row["nmi"] <= 1 + 1e-9
        assert row["mse"] > 0 and row["mse_baseline"] > 0
        assert math.isclose(row["mse_ratio"], row["mse"] / row["mse_baseline"])
        if row["components"] < row["planted"]:
            assert -1 <= row["split_ari"] <= 1
        else:
            assert row["split_ari"] is None and row["split_nmi"] is None
        assert len(row["module_drivers"]) == row["components"]
        if row["setting"] == "authors":
            assert row["components_in_use"] <= 1  # "stop" never uses a disconnected graph
    hier = [r for r in rows if r["dataset"] == "hierarchical"]
    binary = [r for r in rows if r["dataset"] == "binary_modules"]
    assert hier and binary
    for row in hier:
        assert set(ci.HIERARCHICAL_KEYS) <= set(row)
        assert row["n_fine"] == row["n_modules"] * config.subtypes
        assert -1 <= row["ari_fine"] <= 1
    for row in binary:
        assert set(ci.BINARY_KEYS) <= set(row)
        assert np.shape(row["bit_corr"]) == (row["components"], row["n_modules"])
        assert -1 <= row["bit_match"] <= 1 and 0 <= row["bits_owned"] <= row["n_modules"]


def test_quick_study_is_json_able_with_a_summary_per_dataset_and_setting(quick_result):
    json.dumps(quick_result)  # plain types only
    summary = quick_result["summary"]
    config = ci.ClusterIndicationConfig.quick()
    assert len(summary) == len(config.datasets) * len(config.settings)
    for record in summary:
        assert record["seeds"] == 1 and 0 <= record["exact_rate"] <= 1
        assert record["components_mean"] >= 1
    assert quick_result["config"]["gsreg"]["on_disconnect"] == "continue"
    assert quick_result["config"]["authors"]["buffer_size"] == 32


def test_gsreg_setting_recovers_three_planted_modules():
    row = ci.run_one("modules", 3, seed=0, setting="gsreg", config=ci.ClusterIndicationConfig())
    assert row["ari"] >= 0.9
    assert row["components"] >= 3
    # the primary task pays for the modules, within bounds
    assert row["mse_ratio"] < 5


def test_runs_are_deterministic():
    config = ci.ClusterIndicationConfig.quick()
    a = ci.run_one("modules", 3, seed=1, setting="gsreg", config=config)
    b = ci.run_one("modules", 3, seed=1, setting="gsreg", config=config)
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_authors_setting_reads_the_graph_that_fell_apart():
    config = ci.ClusterIndicationConfig.quick()
    run = ci.train("modules", 3, 0, "authors", config)
    if run.learned.frozen:
        assert run.graph.components()[0] > 1  # refused by "stop", read as modules
        assert run.history[-1] == (run.graph_step, run.graph)
        assert run.learned.graph is None or run.learned.graph.components()[0] == 1
    else:
        assert run.graph is run.learned.graph


def test_bit_scores_of_modules_that_own_one_bit_each():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(400, 3))
    labels = np.repeat([0, 1, 2, 3], [4, 4, 4, 2])  # modules 0..2 own a bit, module 3 is noise
    Z = np.repeat(bits, 4, axis=1).astype(float) + 0.01 * rng.normal(size=(400, 12))
    Z = np.concatenate([Z, rng.normal(size=(400, 2))], axis=1)
    scores = ci.bit_scores(Z, labels, bits)
    assert scores["bit_match"] > 0.99
    assert scores["bit_owner"] == [0, 1, 2] and scores["bits_owned"] == 3
    assert np.shape(scores["bit_corr"]) == (4, 3)
    # one module for all bits: owned by nobody alone, matched once
    shared = ci.bit_scores(Z[:, :12], np.zeros(12, dtype=int), bits)
    assert shared["bits_owned"] == 0 and shared["bit_match"] < 0.5


def test_module_drivers_tell_single_cluster_and_conjunction_modules():
    truth = np.repeat([0, 1, 2], 50)
    onehot = np.eye(3)[truth]
    Z = np.stack([onehot[:, 0], onehot[:, 1], onehot[:, 0] + onehot[:, 2]], axis=1)
    assert ci.module_drivers(Z, np.array([0, 1, 2]), truth) == [[0], [1], [0, 2]]


def test_summary_and_aim():
    base = {
        "dataset": "modules",
        "n_modules": 3,
        "setting": "gsreg",
        "planted": 3,
        "split_ari": None,
        "mse_ratio": 1.5,
        "nmi": 0.9,
        "module_drivers": [[0], [1], [2]],
    }
    rows = [
        {**base, "seed": s, "components": c, "exact": c == 3, "ari": a}
        for s, (c, a) in enumerate([(3, 1.0), (3, 0.95), (4, 0.9), (3, 1.0), (3, 0.92)])
    ]
    (record,) = ci.summarize(rows)
    assert record["exact"] == 4 and record["components"] == [3, 3, 4, 3, 3]
    assert record["ari_mean"] == pytest.approx(0.954)
    assert record["split_ari_n"] == 0 and record["split_ari_mean"] is None
    assert record["single_modules_mean"] == 3 and record["conjunction_modules_mean"] == 0
    assert ci.aim_reached(record)
    assert not ci.aim_reached({**record, "exact": 3})
    assert not ci.aim_reached({**record, "ari_mean": 0.85})


def test_config_checks_and_quick_variant():
    full, quick = ci.ClusterIndicationConfig(), ci.ClusterIndicationConfig.quick()
    assert full.seeds == (0, 1, 2, 3, 4) and len(quick.seeds) == 1
    assert quick.gsreg.epochs < full.gsreg.epochs
    assert full.gsreg.buffer_size == 1024 and full.gsreg.on_disconnect == "continue"
    assert full.authors.batch_size == full.authors.buffer_size == 32
    assert full.authors.on_disconnect == "stop"
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.seeds = (1,)
    with pytest.raises(ValueError, match="dataset kind"):
        ci.ClusterIndicationConfig(datasets=(("blobs", 3),))
    with pytest.raises(ValueError, match="setting"):
        ci.ClusterIndicationConfig(settings=("mine",))
    with pytest.raises(ValueError, match="model"):
        ci.ClusterIndicationConfig(gsreg=dataclasses.replace(full.gsreg, model="conv"))
    # the graph is part of a setting: the authors keep the paper's kNN graph with k = 5
    assert full.authors.kernel == "knn" and full.authors.k == 5
    assert full.gsreg.kernel in ci.KERNELS and full.gsreg.k >= 5
    with pytest.raises(ValueError, match="kernel"):
        ci.ClusterIndicationConfig(gsreg=dataclasses.replace(full.gsreg, kernel="gaussian"))
    with pytest.raises(ValueError, match="k must"):
        ci.ClusterIndicationConfig(gsreg=dataclasses.replace(full.gsreg, k=100))


def test_settings_k_reaches_the_learned_graph_and_workers_do_not_change_rows():
    config = ci.ClusterIndicationConfig.quick()
    config = dataclasses.replace(config, gsreg=dataclasses.replace(config.gsreg, k=7))
    run = ci.train("modules", 3, 0, "gsreg", config)
    assert run.learned.k == 7 and run.learned.kernel == config.gsreg.kernel
    jobs = [("modules", 3, seed, "gsreg", config) for seed in (0, 1)]
    serial = ci.run_many(jobs, workers=1, progress=False)
    parallel = ci.run_many(jobs, workers=2, progress=False)
    for a, b in zip(serial, parallel, strict=True):
        a.pop("seconds"), b.pop("seconds")
    assert serial == parallel
