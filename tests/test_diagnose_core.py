import json
import math
from types import SimpleNamespace

import pytest
import torch

from smolmix.core.errors import SmolmixError
from smolmix.diagnose import (
    held_out_loss,
    interference,
    interference_over_checkpoints,
    neuron_allocation,
    retention,
    task_gradients,
)
from smolmix.diagnose.neurons import down_projections
from smolmix.lab.tasks import TASKS, make_eval_set
from smolmix.models.ladder import build_model, get_size, parameter_count, save_checkpoint
from smolmix.train.data import padded_batches
from smolmix.train.encoding import encode_prompt_completion


class LinearLoss(torch.nn.Module):
    """A hand-built "model" whose loss is linear in its parameters: ``loss = <w, x>``.

    Used because its gradients are known exactly (the batch's ``x``), so the interference split
    and retention can be checked against values computed by hand; a real model's cannot.
    """

    def __init__(self, dim: int = 3) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, dim))
        self.drop = torch.nn.Dropout(0.5)  # its train/eval flag must come back as it was

    def forward(self, x, labels, **_):
        return SimpleNamespace(loss=(self.w * x).sum())


def linear_batch(x, targets: int) -> dict[str, torch.Tensor]:
    """A batch with gradient ``x`` and ``targets`` target tokens (labels shift by one)."""
    labels = torch.tensor([[-100] + [7] * targets])
    return {"x": torch.tensor(x, dtype=torch.float32), "labels": labels,
            "input_ids": torch.zeros_like(labels), "attention_mask": torch.ones_like(labels)}


G = (1.0, 2.0, 2.0)  # |G|^2 = 9
NEG_G = tuple(-v for v in G)
ORTHO = (2.0, -1.0, 0.0)  # <ORTHO, G> = 0


def test_task_gradients_weight_batches_by_target_tokens():
    # (1*(1,5,2) + 3*(1,1,2)) / 4 = (1,2,2); the unweighted mean would be (1,3,2).
    model = LinearLoss().train()
    grads = task_gradients(model, {"a": [linear_batch((1, 5, 2), 1), linear_batch((1, 1, 2), 3)]})
    assert torch.allclose(grads["a"], torch.tensor(G))
    assert grads["a"].dtype == torch.float32
    assert model.training and model.drop.training and model.w.grad is None
    first = task_gradients(model, {"a": [linear_batch((1, 5, 2), 1), linear_batch(G, 3)]},
                           max_batches=1)
    assert torch.allclose(first["a"], torch.tensor([1.0, 5.0, 2.0]))
    # A gradient already on the model survives; an unreached parameter contributes zeros; the
    # float64 model takes the autograd.grad path instead of backward into .grad views.
    model.w.grad = torch.full((3,), 7.0)
    model.unused = torch.nn.Parameter(torch.ones(2))
    batches = {"a": [linear_batch(G, 2)]}
    assert torch.equal(task_gradients(model, batches)["a"], torch.tensor([*G, 0.0, 0.0]))
    assert torch.equal(model.w.grad, torch.full((3,), 7.0)) and model.unused.grad is None
    as64 = {"a": [{**b, "x": b["x"].double()} for b in batches["a"]]}
    assert torch.equal(task_gradients(model.double(), as64)["a"], torch.tensor([*G, 0.0, 0.0]))
    assert task_gradients(model, as64, params=[model.w])["a"].shape == (3,)


def test_interference_split_matches_hand_computation():
    model = LinearLoss()
    grads = task_gradients(model, {"a": [linear_batch(G, 2)], "b": [linear_batch(NEG_G, 4)]})
    # shares 3:1 are normalised to 0.75/0.25; extra tasks in shares are ignored.
    result = interference(grads, {"a": 3.0, "b": 1.0, "not_measured": 5.0})
    assert result.tasks == ["a", "b"]
    assert result.shares == pytest.approx({"a": 0.75, "b": 0.25})
    assert result.norms == pytest.approx({"a": 3.0, "b": 3.0})
    assert result.cosine == [pytest.approx([1.0, -1.0]), pytest.approx([-1.0, 1.0])]
    # self_t = p_t |g_t|^2; others_t = sum_{s != t} p_s <g_s, g_t>; total = self + others.
    assert result.self_part == pytest.approx({"a": 0.75 * 9, "b": 0.25 * 9})
    assert result.others_part == pytest.approx({"a": -0.25 * 9, "b": -0.75 * 9})
    assert result.total == pytest.approx({"a": 4.5, "b": -4.5})
    assert result.others_normalised == pytest.approx({"a": -0.25, "b": -0.75})
    assert result.others_cosine == pytest.approx({"a": -1.0, "b": -1.0})
    # The same gradients under equal shares: the two tasks cancel exactly.
    assert result.reweighted({"a": 1, "b": 1}).total == pytest.approx({"a": 0.0, "b": 0.0})
    json.dumps(result.to_dict())


def test_interference_orthogonal_and_zero_gradients():
    grads = {"a": torch.tensor(G), "c": torch.tensor(ORTHO), "z": torch.zeros(3)}
    result = interference(grads, {"a": 0.5, "c": 0.25, "z": 0.25})
    assert result.others_part["a"] == pytest.approx(0.0)
    assert result.total["a"] == pytest.approx(0.5 * 9)
    assert result.cosine[0][1] == pytest.approx(0.0)
    assert math.isnan(result.cosine[0][2]) and math.isnan(result.others_normalised["z"])
    assert result.to_dict()["others_normalised"]["z"] is None
    with pytest.raises(SmolmixError, match="'c'"):
        interference(grads, {"a": 1.0, "z": 1.0})


def test_retention_is_one_when_nothing_undoes_the_progress():
    model = LinearLoss()
    task, held = [linear_batch(G, 2)], [linear_batch(G, 5)]
    alone = retention(model, task, [], k=3, m=0, lr=0.1, held_out=held)
    assert alone.gain == pytest.approx(3 * 0.1 * 9)
    assert alone.retention == pytest.approx(1.0)
    for mixture in ([linear_batch(ORTHO, 3)], [linear_batch((0, 0, 0), 3)]):
        assert retention(model, task, mixture, k=3, m=5, lr=0.1,
                         held_out=held).retention == pytest.approx(1.0)


def test_retention_is_zero_when_the_mixture_exactly_undoes_it():
    model = LinearLoss().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # SGD: k steps along -G then k steps along +G return w to where it started (L back to L0).
    result = retention(model, [linear_batch(G, 2)], [linear_batch(NEG_G, 1)], k=4, m=4,
                       lr=0.05, held_out=[linear_batch(G, 3)])
    assert result.retention == pytest.approx(0.0, abs=1e-6)
    assert result.loss_after_mixture == pytest.approx(result.loss_start)
    # Twice as many opposite steps: ends worse than it started.
    assert retention(model, [linear_batch(G, 2)], [linear_batch(NEG_G, 1)], k=2, m=4, lr=0.05,
                     held_out=[linear_batch(G, 3)]).retention == pytest.approx(-1.0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and model.w.grad is None


def test_retention_undefined_without_gain_and_with_adam(tokenizer):
    model = LinearLoss()
    flat = retention(model, [linear_batch((0, 0, 0), 2)], [], k=2, m=0, lr=0.1,
                     held_out=[linear_batch(G, 1)])
    assert flat.retention is None and "did not lower" in flat.reason
    lab = build_model(get_size("xxs"), tokenizer, seed=0)
    batches = lab_batches(tokenizer, ["copy", "sort"], per_task=1, size=8)
    adam = retention(lab, batches["copy"], batches["sort"], k=3, m=2, lr=1e-2, optimizer="adam",
                     held_out=lab_batches(tokenizer, ["copy"], 1, 8, seed=1)["copy"])
    assert adam.gain > 0 and adam.retention is not None and math.isfinite(adam.retention)
    json.dumps(adam.to_dict())
    with pytest.raises(SmolmixError, match="optimizer"):
        retention(model, [linear_batch(G, 1)], [], k=1, m=0, lr=0.1, optimizer="lion",
                  held_out=[linear_batch(G, 1)])


def lab_batches(tokenizer, tasks, per_task, size, seed=0):
    """``per_task`` padded batches of ``size`` held-out lab examples for each task."""
    out = {}
    for name in tasks:
        recs = make_eval_set(TASKS[name], per_task * size, seed=seed)
        enc = encode_prompt_completion(tokenizer, [r.prompt for r in recs],
                                       [r.completion for r in recs])
        out[name] = padded_batches(enc, size, tokenizer.pad_token_id)
    return out


def test_task_gradients_on_a_ladder_model(tokenizer):
    model = build_model(get_size("xs"), tokenizer, seed=0).train()
    batches = lab_batches(tokenizer, ["copy", "sort", "lookup"], per_task=2, size=8)
    grads = task_gradients(model, batches)
    assert sorted(grads) == ["copy", "lookup", "sort"]
    assert all(g.shape == (parameter_count(model),) and torch.isfinite(g).all()
               for g in grads.values())
    assert model.training and all(p.grad is None for p in model.parameters())
    # Token-weighted over batches = the gradient of the mean loss over all the task's tokens.
    whole = lab_batches(tokenizer, ["copy"], per_task=1, size=16)["copy"][0]
    model.eval()
    model(**whole).loss.backward()
    direct = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    assert torch.allclose(grads["copy"], direct, atol=1e-6, rtol=1e-4)
    result = interference(grads, {"copy": 0.8, "sort": 0.15, "lookup": 0.05})
    assert all(result.cosine[i][i] == pytest.approx(1.0) for i in range(3))
    assert all(math.isfinite(v) for v in result.total.values())
    assert all(-1 <= c <= 1 for row in result.cosine for c in row)
    json.dumps(result.to_dict())


def test_interference_over_checkpoints(tokenizer, tmp_path):
    for step, seed in ((20, 1), (10, 0)):
        save_checkpoint(build_model(get_size("xxs"), tokenizer, seed=seed), tokenizer,
                        tmp_path / f"checkpoint-{step}")
    batches = lab_batches(tokenizer, ["copy", "sort"], per_task=1, size=4)
    curve = interference_over_checkpoints(
        [tmp_path / "checkpoint-20", tmp_path / "checkpoint-10"], batches,
        {"copy": 0.9, "sort": 0.1}, device="cpu", quiet=True)
    assert curve.steps == [10, 20]
    assert {t: len(v) for t, v in curve.series("others_part").items()} == {"copy": 2, "sort": 2}
    json.dumps(curve.to_dict())
    with pytest.raises(SmolmixError, match="step"):
        interference_over_checkpoints([tmp_path / "checkpoint-10"], batches, {"copy": 1.0,
                                      "sort": 1.0}, steps=[1, 2])


def test_neuron_allocation_on_a_ladder_model(tokenizer):
    model = build_model(get_size("s"), tokenizer, seed=0).train()
    batches = lab_batches(tokenizer, ["copy", "sort", "lookup"], per_task=2, size=8)
    result = neuron_allocation(model, batches)
    size = get_size("s")
    assert result.layers == [f"model.layers.{i}.mlp.down_proj" for i in range(size.layers)]
    assert result.sizes == [size.intermediate] * size.layers
    assert result.labels == ["copy", "lookup", "sort", "shared", "unused"]
    assert sum(result.counts().values()) == size.layers * size.intermediate
    assert all(sum(c.values()) == size.intermediate for c in result.counts_per_layer())
    assert all(v.shape == (size.intermediate,) for vs in result.importance.values() for v in vs)
    assert model.training and all(p.grad is None for p in model.parameters())
    summary = json.loads(json.dumps(result.to_dict(per_neuron=True)))
    assert len(summary["owner"][0]) == size.intermediate
    # dominance 1: every used neuron has an owner; a huge dominance: every used one is shared.
    assert neuron_allocation(model, batches, dominance=1.0).counts()["shared"] == 0
    strict = neuron_allocation(model, batches, dominance=1e9).counts()
    assert strict["shared"] + strict["unused"] == size.layers * size.intermediate


def test_neuron_importance_is_activation_times_gradient(tokenizer):
    model = build_model(get_size("xs"), tokenizer, seed=0).eval()
    batch = lab_batches(tokenizer, ["copy"], per_task=1, size=8)["copy"][0]
    down = model.model.layers[0].mlp.down_proj
    seen = {}
    handle = down.register_forward_pre_hook(lambda m, args: seen.update(a=args[0]))
    tokens = int((batch["labels"][:, 1:] != -100).sum())
    loss = model(**batch).loss * tokens
    act = seen["a"]
    (grad,) = torch.autograd.grad(loss, [act])
    handle.remove()
    expected = (act * grad).abs().sum(dim=(0, 1)) / tokens
    got = neuron_allocation(model, {"copy": [batch]}).importance["copy"][0]
    assert torch.allclose(got.float(), expected, rtol=1e-4, atol=1e-9)
    targets = neuron_allocation(model, {"copy": [batch]}, positions="targets")
    assert (targets.importance["copy"][0] <= got + 1e-12).all()
    model.requires_grad_(False)  # frozen weights: activations still get their gradients
    frozen = neuron_allocation(model, {"copy": [batch]}).importance["copy"][0]
    assert torch.allclose(frozen, got)


def test_model_without_mlp_down_projection_is_a_user_error(tokenizer):
    with pytest.raises(SmolmixError, match="no MLP down projection"):
        neuron_allocation(LinearLoss(), {"a": [linear_batch(G, 1)]})
    assert down_projections(torch.nn.Sequential(torch.nn.Linear(2, 2))) == []


def test_task_without_batches_is_a_user_error_naming_it(tokenizer):
    model = build_model(get_size("xxs"), tokenizer, seed=0)
    batches = {**lab_batches(tokenizer, ["copy"], per_task=1, size=2), "rare_one": []}
    with pytest.raises(SmolmixError, match="rare_one"):
        task_gradients(model, batches)
    with pytest.raises(SmolmixError, match="rare_one"):
        neuron_allocation(model, batches)
    with pytest.raises(SmolmixError, match="held-out"):
        retention(model, batches["copy"], [], k=1, m=0, lr=0.1, held_out=[])
    masked = {"copy": [{**batches["copy"][0],
                        "labels": torch.full_like(batches["copy"][0]["labels"], -100)}]}
    with pytest.raises(SmolmixError, match="no target tokens"):
        task_gradients(model, masked)


def test_held_out_loss_is_the_token_weighted_mean():
    # losses <w, x> = 1.0 on 1 target token and 3.0 on 3: (1*1 + 3*3) / 4, not (1 + 3) / 2
    model = LinearLoss()
    model.w.data = torch.tensor([1.0, 0.0, 0.0])
    batches = [linear_batch((1.0, 0, 0), 1), linear_batch((3.0, 0, 0), 3),
               linear_batch((9.0, 0, 0), 0)]  # no target token: not counted
    assert held_out_loss(model, batches) == pytest.approx(10.0 / 4)


def test_retention_rejects_each_bad_setting_on_its_own():
    model, batch = LinearLoss(), [linear_batch(G, 1)]
    for k, m, lr in ((0, 1, 0.1), (1, -1, 0.1), (1, 1, 0.0)):
        with pytest.raises(SmolmixError):
            retention(model, batch, batch, k=k, m=m, lr=lr, held_out=batch)
