"""The topographic-SAE experiment: the corpus reader, the token classes, the model's
causality, the map read-outs on hand-made maps, the verdict rule, its config checks and a
quick run's files."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import numpy as np
import pytest
import torch

import gsreg
from gsreg import analysis, graphs, report
from gsreg.datasets import text as T
from gsreg.experiments import registry
from gsreg.experiments import topographic_sae as TS

NAME = "topographic-sae"
TEMPLATES = Path(gsreg.__file__).parent / "templates"


# --------------------------------------------------------------------------- corpus


def test_the_corpus_reader_gives_the_same_text_twice_and_splits_by_file():
    first = T.stdlib_corpus(300_000, val_every=5)
    second = T.stdlib_corpus(300_000, val_every=5)
    assert first == second
    names = sorted(p.name for p in T.stdlib_folder().glob("*.py"))
    read = len(first.train_files) + len(first.val_files)
    # every 5th file of the sorted names goes to validation, the rest to training
    assert first.val_files == tuple(names[4:read:5])
    assert set(first.train_files) | set(first.val_files) == set(names[:read])
    assert not set(first.train_files) & set(first.val_files)
    first_file = (T.stdlib_folder() / names[0]).read_bytes().decode("ascii", errors="replace")
    assert first.train.startswith(first_file)


def test_the_corpus_reader_stops_after_the_file_that_crosses_the_budget():
    names = sorted(T.stdlib_folder().glob("*.py"))
    sizes = np.cumsum([p.stat().st_size for p in names])
    budget = int(sizes[11]) - 1  # crossed inside the 12th file
    corpus = T.stdlib_corpus(budget, val_every=4)
    assert len(corpus.train_files) + len(corpus.val_files) == 12


def test_the_corpus_reader_refuses_a_budget_too_small_for_a_validation_file():
    with pytest.raises(ValueError, match="no validation file"):
        T.stdlib_corpus(1, val_every=10)


def test_encode_maps_printable_ascii_to_its_index_and_anything_else_to_other():
    ids = T.encode("a\n~é\x00")
    assert ids.tolist() == [
        T.VOCAB.index("a"),
        T.VOCAB.index("\n"),
        T.VOCAB.index("~"),
        T.OTHER,
        T.OTHER,
    ]
    assert T.decode(T.encode("def f(x):\n\treturn 1")) == "def f(x):\n\treturn 1"


# --------------------------------------------------------------------------- classes


def test_token_classes_of_a_known_string():
    text = 'if x1 == 42: f("a")\n'
    labels = [T.CLASSES[c] for c in T.token_classes(text)]
    by_hand = [
        "keyword", "keyword",  # if
        "whitespace",
        "identifier", "identifier",  # x1: the digit of a name is part of the name
        "whitespace",
        "operator", "operator",  # ==
        "whitespace",
        "digit", "digit",  # 42
        "operator",  # :
        "whitespace",
        "identifier",  # f
        "bracket", "quote", "identifier", "quote", "bracket",  # ("a")
        "whitespace",  # newline
    ]  # fmt: skip
    assert labels == by_hand
    assert [T.CLASSES[c] for c in T.token_classes("#\\$")] == ["other"] * 3


def test_a_keyword_inside_a_longer_name_is_an_identifier():
    labels = [T.CLASSES[c] for c in T.token_classes("iffy in_ in")]
    assert labels == ["identifier"] * 4 + ["whitespace"] + ["identifier"] * 3 + [
        "whitespace",
        "keyword",
        "keyword",
    ]


# --------------------------------------------------------------------------- model


def test_the_character_model_is_causal():
    torch.manual_seed(0)
    model = TS.CharTransformer(T.VOCAB_SIZE, 16, 2, 2, context=12).eval()
    ids = torch.randint(0, T.VOCAB_SIZE, (2, 12))
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % T.VOCAB_SIZE
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_next_char_loss_is_the_cross_entropy_of_the_shifted_ids():
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    log_p = torch.log_softmax(logits, -1)
    by_hand = -np.mean([float(log_p[b, t, ids[b, t + 1]]) for b in range(2) for t in range(4)])
    assert float(TS.next_char_loss(logits, ids)) == pytest.approx(by_hand, rel=1e-6)


# --------------------------------------------------------------------------- read-outs


def test_map_scores_are_class_means_with_morans_i_of_each_map():
    graph = graphs.grid(4, 4)
    rng = np.random.default_rng(0)
    Z = rng.random((70, 16))
    labels = rng.integers(0, len(T.CLASSES), size=70)
    labels[:7] = np.arange(7)  # every class present
    scores = TS.map_scores(Z, labels, graph, n_permutations=50, seed=0)
    digit = T.CLASSES.index("digit")
    np.testing.assert_allclose(scores["maps"][0], Z[labels == digit].mean(axis=0))
    for row, name in enumerate(TS.MAP_CLASSES):
        assert scores["per_class"][name]["morans_i"] == pytest.approx(
            analysis.morans_i(scores["maps"][row], graph)
        )
    assert scores["mean"]["observed"] == pytest.approx(
        np.mean(analysis.morans_i(scores["maps"], graph))
    )


def test_a_smooth_class_map_beats_its_permutation_null():
    graph = graphs.grid(6, 6)
    ramp = np.tile(np.arange(6.0), 6)  # smooth along the rows of the grid
    Z = np.stack([ramp, ramp[::-1]] * 10)
    labels = np.array([T.CLASSES.index("digit"), T.CLASSES.index("quote")] * 10)
    scores = TS.map_scores(Z, labels, graph, n_permutations=199, seed=0)
    assert scores["per_class"]["digit"]["p"] < 0.05
    assert scores["per_class"]["bracket"]["morans_i"] is None  # absent from the rows
    assert scores["mean"]["p_value"] < 0.05


def test_top_contexts_find_the_largest_activations_and_the_text_before_them():
    ids = T.encode("abcdefgh").reshape(2, 4)
    Z = np.zeros((8, 2))
    Z[6, 0], Z[1, 0] = 5.0, 2.0  # "g" of window 1 and "b" of window 0
    (entry,) = TS.top_contexts(Z, ids, [0], count=3)
    assert [(e["before"], e["char"], e["activation"]) for e in entry["examples"]] == [
        ("ef", "g", 5.0),
        ("a", "b", 2.0),
    ]


def _models(topo_i, arranged_i, plain_i, topo_p):
    def model(value, p):
        per_class = {c: {"morans_i": value} for c in TS.MAP_CLASSES}
        return {"morans_i": value, "morans_i_p": p, "per_class": per_class}

    return {
        "topographic": model(topo_i, topo_p),
        "plain_arranged": model(arranged_i, 0.001),
        "plain": model(plain_i, 0.5),
    }


@pytest.mark.parametrize(
    ("topo", "arranged", "p", "holds", "best"),
    [
        (0.6, 0.4, 0.001, True, "plain SAE, arranged post hoc"),
        (0.3, 0.4, 0.001, False, "plain SAE, arranged post hoc"),
        (0.6, 0.4, 0.2, False, "plain SAE, arranged post hoc"),
        (0.6, -0.1, 0.001, True, "plain SAE, as trained"),
    ],
)
def test_the_verdict_needs_a_map_above_its_null_and_above_the_best_control(
    topo, arranged, p, holds, best
):
    cost = {"variance_explained": -0.02, "loss_recovered": -0.01}
    v = TS.verdict(_models(topo, arranged, 0.0, p), cost)
    assert v["holds"] is holds
    assert v["best_control"] == best
    assert v["margin"] == pytest.approx(topo - max(arranged, 0.0))
    assert v["classes_won"] == (len(TS.MAP_CLASSES) if topo > arranged else 0)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"graph": "ring:64"}, "must be a grid"),
        ({"k": 65}, "exceeds the 64 latents"),
        ({"d_model": 30, "n_heads": 4}, "multiple of n_heads"),
        ({"sae_steps": 50}, "leaves no step with GSR"),
        ({"budget": 0}, "budget must be a number > 0"),
        ({"val_every": 1}, "val_every must be >= 2"),
        ({"lm_steps": 2.5}, "lm_steps must be a positive int"),
        ({"warmup_share": 1.0}, "warmup_share must be below 1"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        TS.TopographicSAEConfig.quick(**override)


def test_the_full_config_is_valid_and_quick_is_smaller():
    full, quick = TS.TopographicSAEConfig(), TS.TopographicSAEConfig.quick()
    assert full.graph == "grid:16x16" and full.d_model == 128 and full.n_layers == 2
    assert quick.lm_steps < full.lm_steps and quick.corpus_bytes < full.corpus_bytes


# --------------------------------------------------------------------------- quick run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    rendered = []

    def recording_prose(template, **values):
        rendered.append((template, values))
        return report.prose(template, **values)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TS, "prose", recording_prose)
        folder = registry.run_experiment(NAME, out, quick=True, progress=False)
    return folder, rendered


def test_quick_run_writes_the_report_metrics_and_figures(quick_run):
    quick_run, _ = quick_run
    names = {p.name for p in quick_run.iterdir()}
    assert {"report.html", "metrics.json", "config.json", "run.json", "figures"} <= names
    assert not [n for n in names if n.startswith(".capture")]  # the capture is removed
    assert {p.stem for p in (quick_run / "figures").iterdir()} == set(TS.FIGURES)
    metrics = json.loads((quick_run / "metrics.json").read_text())
    for key in TS.MODELS:
        assert set(metrics["models"][key]["per_class"]) == set(TS.MAP_CLASSES)
    topo, plain = metrics["models"]["topographic"], metrics["models"]["plain"]
    assert topo["l0"] <= TS.TopographicSAEConfig.quick().k
    assert metrics["cost"]["variance_explained"] == pytest.approx(
        topo["variance_explained"] - plain["variance_explained"]
    )
    # the control is the same SAE: only its map scores differ
    assert metrics["models"]["plain_arranged"]["variance_explained"] == plain["variance_explained"]
    assert metrics["lm"]["train_seconds"] > 0
    html = (quick_run / "report.html").read_text()
    assert "Verdict:" in html and "«" in html
    assert metrics["contexts"] and metrics["gsr_budget"]["weights"]["pre_activations"] > 0
    headline = registry.get_experiment(NAME).headline(metrics)
    words = headline["topographic SAE vs best control"]
    assert words.endswith("not more organised") is not metrics["verdict"]["holds"]
    config = TS.TopographicSAEConfig(**json.loads((quick_run / "config.json").read_text()))
    assert config == TS.TopographicSAEConfig.quick()


def test_quick_run_report_holds_the_prose_of_every_template(quick_run):
    folder, rendered = quick_run
    own = {f"topographic_sae/{p.name}" for p in (TEMPLATES / "topographic_sae").glob("*.txt")}
    assert own and own <= {template for template, _ in rendered}
    page = (folder / "report.html").read_text()
    for template, values in rendered:
        for paragraph in report.prose(template, **values).split("\n\n"):
            assert escape(paragraph) in page, (template, paragraph)


class _Modules:
    """A learned graph stand-in: ``graph`` set and ``modules()`` the given labels."""

    def __init__(self, labels):
        self.graph = object()
        self._labels = np.asarray(labels)

    def modules(self):
        return self._labels


def test_learned_modules_that_follow_the_token_classes_score_ari_one_and_beat_a_null():
    rng = np.random.default_rng(0)
    n_rows, n_latents = 400, 40  # enough latents that random regroupings rarely split
    labels = np.repeat([0, 1], n_rows // 2)
    modules = np.repeat([0, 1], n_latents // 2)
    Z = rng.normal(size=(n_rows, n_latents))  # noise: a random regrouping mixes the blocks
    Z[labels == 0, :20] += 1.0  # module 0 drives class 0, module 1 class 1
    Z[labels == 1, 20:] += 1.0
    plain = rng.random((n_rows, n_latents))
    X = rng.normal(size=(n_rows, 5))
    windows = rng.integers(0, 10, size=(n_rows // 20, 20))
    config = TS.TopographicSAEConfig.quick()
    out = TS.learned_modules(_Modules(modules), Z, plain, X, labels, windows, config)
    assert out["n_modules"] == 2 and out["sizes"] == [20, 20]
    assert out["ari"] == pytest.approx(1.0)
    assert out["p_value"] < 0.05 and out["null_mean"] < 0.5
    assert out["helps"] == (out["ari"] > max(out["controls"].values()))
    assert [c["module"] for c in out["contexts"]] == [0, 1]
    one = TS.learned_modules(_Modules(np.zeros(40, int)), Z, plain, X, labels, windows, config)
    assert one == {"n_modules": 1, "sizes": [40], "ari": None}
