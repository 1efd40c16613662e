"""gsreg.integrations.transformers on a tiny randomly initialised GPT-2 (no download)."""

import importlib.util

import pytest
import torch

transformers = pytest.importorskip("transformers")

from gsreg import graphs  # noqa: E402
from gsreg.integrations.transformers import STATE_FILE, GSRCallback, GSRTrainer  # noqa: E402

GRAPH = graphs.grid(8, 16)
needs_accelerate = pytest.mark.skipif(
    importlib.util.find_spec("accelerate") is None,
    reason="transformers.Trainer needs the accelerate package",
)  # the 4 x 32 = 128 units of the MLP's first layer


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32)
    return transformers.GPT2LMHeadModel(config)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=64, length=16, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 64, (n, length), generator=generator)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def train(tmp_path, weight, max_steps=8, model=None, data=None, **args):
    model = model if model is not None else tiny_model()
    layer = model.transformer.h[0].mlp.c_fc
    gsr = GSRCallback({layer: GRAPH}, weight=weight)
    options = dict(
        output_dir=str(tmp_path),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        logging_steps=2,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        data_seed=0,
    )
    options.update(args)
    trainer = GSRTrainer(
        model=model,
        args=transformers.TrainingArguments(**options),
        train_dataset=data if data is not None else Tokens(),
        callbacks=[gsr],
    )
    return trainer, gsr, model


def graph_energy(model, ids):
    """mean over tokens of z^T L z of the c_fc output, from the graph's edge list."""
    captured = []
    layer = model.transformer.h[0].mlp.c_fc
    handle = layer.register_forward_hook(lambda m, i, out: captured.append(out.detach()))
    with torch.no_grad():
        model(input_ids=ids)
    handle.remove()
    z = captured[0].reshape(-1, GRAPH.n_nodes).double()
    i, j = (torch.as_tensor(a.copy()) for a in GRAPH.edges.T)
    w = torch.as_tensor(GRAPH.weights)
    return float(((z[:, i] - z[:, j]) ** 2 * w).sum(1).mean())


def dropout_free_model(seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def run_events(model, gsr, batches, accumulation=1, lr=1e-2):
    """The Trainer's order of events and loss handling, without a Trainer: returns the
    logs popped after every optimiser step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gsr.on_train_begin(None, None, None, model=model)
    model.train()
    logs = []
    for start in range(0, len(batches), accumulation):
        for ids in batches[start : start + accumulation]:
            loss = model(input_ids=ids, labels=ids).loss / accumulation
            gsr.add_penalty(loss, 1.0 / accumulation).backward()
        optimizer.step()
        optimizer.zero_grad()
        gsr.on_optimizer_step(None, None, None)
        logs.append(gsr.pop_logs())
    gsr.on_train_end(None, None, None)
    return logs


def test_the_callback_penalty_lowers_the_layers_graph_energy_against_weight_zero():
    batches = list(Tokens(n=96, seed=2).ids.split(8))
    ids = Tokens(seed=1).ids[:16]
    energies = {}
    for weight in (0.0, 1.0):
        model = tiny_model()
        run_events(model, GSRCallback({model.transformer.h[0].mlp.c_fc: GRAPH}, weight), batches)
        energies[weight] = graph_energy(model.eval(), ids)
    assert energies[1.0] < 0.5 * energies[0.0]


def test_the_callback_adds_weight_times_the_mean_energy_and_logs_it():
    model, reference = dropout_free_model(), dropout_free_model()
    ids = Tokens(n=8).ids
    gsr = GSRCallback({"transformer.h.0.mlp.c_fc": GRAPH}, weight=0.5)
    gsr.on_train_begin(None, None, None, model=model)
    model.train()
    task = model(input_ids=ids, labels=ids).loss
    total = gsr.add_penalty(task)
    expected = graph_energy(reference.eval(), ids)
    assert float((total - task).detach()) == pytest.approx(0.5 * expected, rel=1e-5)
    logs = gsr.pop_logs()
    assert logs["gsr/transformer.h.0.mlp.c_fc"] == pytest.approx(expected, rel=1e-5)
    assert logs["gsr/transformer.h.0.mlp.c_fc/weight"] == 0.5
    assert gsr.pop_logs() == {}  # popped


def test_logs_are_means_over_the_batches_since_the_last_pop():
    model = dropout_free_model()
    batches = list(Tokens(n=16).ids.split(8))
    gsr = GSRCallback({"transformer.h.0.mlp.c_fc": GRAPH}, weight=1e-3)
    gsr.on_train_begin(None, None, None, model=model)
    model.train()
    for ids in batches:
        gsr.add_penalty(model(input_ids=ids, labels=ids).loss)
    mean = sum(graph_energy(dropout_free_model().eval(), ids) for ids in batches) / 2
    assert gsr.pop_logs()["gsr/transformer.h.0.mlp.c_fc"] == pytest.approx(mean, rel=1e-5)


def test_evaluation_batches_add_nothing_and_log_nothing():
    model = dropout_free_model()
    ids = Tokens(n=8).ids
    gsr = GSRCallback({"transformer.h.0.mlp.c_fc": GRAPH}, weight=1.0)
    gsr.on_train_begin(None, None, None, model=model)
    model.eval()
    loss = model(input_ids=ids, labels=ids).loss
    assert gsr.add_penalty(loss) is loss
    assert gsr.pop_logs() == {}


def test_the_callback_steps_per_optimizer_step_and_removes_its_hooks_at_the_end():
    model = tiny_model()
    gsr = GSRCallback({model.transformer.h[0].mlp.c_fc: GRAPH}, weight=1e-3)
    run_events(model, gsr, list(Tokens(n=48).ids.split(8)), accumulation=2)
    assert gsr.regularizer.step_count == 3
    assert not model.transformer.h[0].mlp.c_fc._forward_hooks
    assert not model._forward_pre_hooks


def test_saved_state_is_restored_at_the_next_train_begin(tmp_path):
    model = tiny_model()
    gsr = GSRCallback({model.transformer.h[0].mlp.c_fc: GRAPH}, weight=1e-3)
    run_events(model, gsr, list(Tokens(n=32).ids.split(8)))
    gsr.save(tmp_path)
    assert torch.load(tmp_path / STATE_FILE, weights_only=True) == {"step": 4}
    fresh = GSRCallback({model.transformer.h[0].mlp.c_fc: GRAPH}, weight=1e-3)
    fresh.load(tmp_path)
    fresh.on_train_begin(None, None, None, model=model)
    assert fresh.regularizer.step_count == 4
    fresh.on_train_end(None, None, None)


def test_bad_targets_and_keywords_fail_in_the_constructor():
    with pytest.raises(TypeError, match="target must be a Graph"):
        GSRCallback({"transformer.h.0.mlp.c_fc": 3})
    with pytest.raises(TypeError, match="keywords of GraphRegularizer"):
        GSRCallback({"transformer.h.0.mlp.c_fc": GRAPH}, lamda=1.0)


# -- through transformers.Trainer (which needs the accelerate package) -----------------------


@needs_accelerate
def test_the_penalty_lowers_the_layers_graph_energy_against_a_weight_zero_run(tmp_path):
    ids = Tokens(seed=1).ids[:16]
    energies = {}
    for weight in (0.0, 1.0):
        trainer, _, model = train(tmp_path / str(weight), weight)
        trainer.train()
        model.eval()
        energies[weight] = graph_energy(model, ids)
    assert energies[1.0] < 0.5 * energies[0.0]


@needs_accelerate
def test_the_logged_penalty_equals_an_independent_energy_without_dropout(tmp_path):
    model, reference = dropout_free_model(), dropout_free_model()
    data = Tokens(n=8)  # one batch of 8: the step sees all of it, in whatever order
    trainer, gsr, _ = train(
        tmp_path, 1e-3, max_steps=1, logging_steps=1, learning_rate=0.0, model=model, data=data
    )
    batch = {"input_ids": data.ids, "labels": data.ids}
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry][0]
    expected = graph_energy(reference.eval(), batch["input_ids"])
    assert logged["gsr/transformer.h.0.mlp.c_fc"] == pytest.approx(expected, rel=1e-4)
    # the training loss is the Trainer's task loss (however this transformers version
    # normalises it) plus weight x energy: compare with the same run at weight 0
    plain, _, _ = train(
        tmp_path / "plain",
        0.0,
        max_steps=1,
        logging_steps=1,
        learning_rate=0.0,
        model=dropout_free_model(),
        data=data,
    )
    plain.train()
    task = [entry for entry in plain.state.log_history if "loss" in entry][0]["loss"]
    assert logged["loss"] == pytest.approx(task + 1e-3 * expected, rel=1e-4)


@needs_accelerate
def test_the_regularizer_steps_once_per_optimizer_step_and_removes_its_hooks(tmp_path):
    trainer, gsr, model = train(tmp_path, 1e-3, max_steps=3, gradient_accumulation_steps=2)
    layer = model.transformer.h[0].mlp.c_fc
    before = (dict(layer._forward_hooks), dict(model._forward_pre_hooks))
    trainer.train()
    assert gsr.regularizer.step_count == 3
    assert (dict(layer._forward_hooks), dict(model._forward_pre_hooks)) == before


@needs_accelerate
def test_checkpoints_hold_the_regularizer_state_and_resume_restores_it(tmp_path):
    trainer, gsr, _ = train(tmp_path, 1e-3, max_steps=4, save_strategy="steps", save_steps=4)
    trainer.train()
    folder = tmp_path / "checkpoint-4"
    assert torch.load(folder / STATE_FILE, weights_only=True) == {"step": 4}
    resumed, gsr2, _ = train(tmp_path, 1e-3, max_steps=6)
    resumed.train(resume_from_checkpoint=str(folder))
    assert gsr2.regularizer.step_count == 6


@needs_accelerate
def test_a_trainer_without_a_gsr_callback_is_refused(tmp_path):
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="exactly one GSRCallback"):
        GSRTrainer(model=tiny_model(), args=args, train_dataset=Tokens())
