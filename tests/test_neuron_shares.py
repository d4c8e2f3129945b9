"""Attention heads as attribution units and the soft shares of neurons and heads."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from test_diagnose_core import lab_batches

from smolmix.core.errors import SmolmixError
from smolmix.diagnose import neuron_allocation
from smolmix.diagnose.neurons import Neurons, attention_projections, unit_shares
from smolmix.models.ladder import LadderSize, build_model


def tiny(hidden: int, heads: int = 2) -> LadderSize:
    """A two-layer ladder-style model size of its own (not a named rung, which may change)."""
    return LadderSize(f"w{hidden}", hidden=hidden, layers=2, heads=heads, intermediate=2 * hidden)


def o_proj_run(model, batch, scale=None):
    """Summed target loss and o_proj's input of layer 0; ``scale(a)`` edits that input first."""
    seen = {}

    def hook(module, args):
        a = args[0] if scale is None else scale(args[0])
        seen["a"] = a
        return (a,)

    handle = model.model.layers[0].self_attn.o_proj.register_forward_pre_hook(hook)
    try:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        target = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(  # in the model's dtype (HF's .loss is float32)
            logits[:, :-1].transpose(1, 2), target, ignore_index=-100, reduction="sum")
        return loss, seen["a"], int((target != -100).sum())
    finally:
        handle.remove()


def per_head(values, head_dim):
    """(batch, positions, heads): ``values`` summed over each head's features."""
    return values.reshape(*values.shape[:-1], -1, head_dim).sum(dim=-1)


def test_head_importance_is_the_hand_computation(tokenizer):
    model = build_model(tiny(24), tokenizer, seed=0).eval()
    batch = lab_batches(tokenizer, ["copy"], per_task=1, size=8)["copy"][0]
    loss, act, tokens = o_proj_run(model, batch)
    (grad,) = torch.autograd.grad(loss, [act])
    size = model.config.hidden_size // model.config.num_attention_heads
    signed = per_head(act * grad, size)  # (batch, positions, heads)
    got = neuron_allocation(model, {"copy": [batch]})
    assert got.head_layers == [f"model.layers.{i}.self_attn.o_proj" for i in range(2)]
    assert got.head_dim == size
    expected = signed.abs().sum(dim=(0, 1)) / tokens
    assert torch.allclose(got.head_importance["copy"][0].float(), expected, rtol=1e-4)
    mask = torch.zeros(batch["labels"].shape)
    mask[:, :-1] = (batch["labels"][:, 1:] != -100).float()
    on_targets = (signed.abs() * mask[..., None]).sum(dim=(0, 1)) / tokens
    targets = neuron_allocation(model, {"copy": [batch]}, positions="targets")
    assert torch.allclose(targets.head_importance["copy"][0].float(), on_targets, rtol=1e-4)


def test_head_importance_is_the_first_order_effect_of_ablating_it(tokenizer):
    # Scaling head h's output at one position by (1 - eps) changes the loss by -eps * its signed
    # attribution to first order; the importance sums |that| / eps over positions / tokens.
    # Richardson's 2 D(eps) - D(2 eps) cancels the eps^2 term (the model is float64 but its norms
    # compute in float32, so eps cannot be tiny).
    model = build_model(tiny(24), tokenizer, seed=0).double().eval()
    batch = lab_batches(tokenizer, ["copy"], per_task=1, size=1)["copy"][0]
    size = model.config.hidden_size // model.config.num_attention_heads
    loss, act, tokens = o_proj_run(model, batch)
    (grad,) = torch.autograd.grad(loss, [act])
    signed = per_head(act * grad, size)[0].detach()  # (positions, heads)

    def ablate(position, head, eps):
        def scale(a):
            a = a.clone()
            a[:, position, head * size:(head + 1) * size] *= 1 - eps
            return a
        with torch.no_grad():
            return float(o_proj_run(model, batch, scale)[0] - loss) / eps

    def effect(eps):
        return torch.tensor([[ablate(p, h, eps) for h in range(signed.shape[1])]
                             for p in range(signed.shape[0])], dtype=torch.float64)

    first_order = 2 * effect(0.03) - effect(0.06)
    assert torch.allclose(first_order, -signed, atol=1e-3 * float(signed.abs().max()))
    got = neuron_allocation(model, {"copy": [batch]}).head_importance["copy"][0]
    assert torch.allclose(got, first_order.abs().sum(dim=0) / tokens, rtol=2e-3)


def made(importance, heads=None, tasks=None):
    """A :class:`Neurons` from hand-made per-layer importance lists (owners all task 0)."""
    tensors = {t: [torch.tensor(v, dtype=torch.float64) for v in layers]
               for t, layers in importance.items()}
    first = next(iter(tensors.values()))
    head_tensors = None if heads is None else {
        t: [torch.tensor(v, dtype=torch.float64) for v in layers] for t, layers in heads.items()}
    return Neurons(tasks=tasks or list(importance), layers=[f"l{i}" for i in range(len(first))],
                   importance=tensors, owner=[torch.zeros(len(v), dtype=torch.long)
                                              for v in first],
                   dominance=2.0, unused=0.01, positions="all", head_importance=head_tensors,
                   head_layers=None if heads is None else ["h0"], head_dim=None)


def test_soft_shares_by_hand():
    # unit 2 unused by every task: left out; units 0, 1, 3 give a 1/2, 1, 3/4 and b 1/2, 0, 1/4.
    found = made({"a": [[1.0, 2.0, 0.0], [3.0]], "b": [[1.0, 0.0, 0.0], [1.0]],
                  "z": [[0.0, 0.0, 0.0], [0.0]]})
    neurons = found.shares()["neurons"]
    assert neurons["units"] == 4 and found.shares()["heads"] is None
    assert neurons["soft_share"] == pytest.approx({"a": 0.75, "b": 0.25, "z": 0.0})
    assert neurons["effective_fraction"]["z"] is None
    q = torch.tensor([1.0, 2.0, 3.0]) / 6
    assert neurons["effective_fraction"]["a"] == pytest.approx(
        math.exp(float(-(q * q.log()).sum())) / 4)
    assert neurons["effective_fraction"]["b"] == pytest.approx(2 / 4)  # two equal units
    json.dumps(found.to_dict(per_neuron=True))


def test_effective_fraction_uniform_one_hot_and_identical_tasks():
    found = made({"uniform": [[2.0, 2.0, 2.0], [2.0]], "one_hot": [[0.0, 5.0, 0.0], [0.0]]},
                 heads={"uniform": [[1.0, 1.0]], "one_hot": [[1.0, 1.0]]})
    shares = found.shares()
    assert shares["neurons"]["effective_fraction"] == pytest.approx(
        {"uniform": 1.0, "one_hot": 0.25})
    assert shares["heads"]["units"] == 2
    assert shares["heads"]["soft_share"] == pytest.approx({"uniform": 0.5, "one_hot": 0.5})
    assert shares["heads"]["effective_fraction"] == pytest.approx(
        {"uniform": 1.0, "one_hot": 1.0})
    nothing = unit_shares(["a", "b"], {"a": [torch.zeros(3)], "b": [torch.zeros(3)]})
    assert nothing["soft_share"] == {"a": None, "b": None}
    summary = json.loads(json.dumps(found.to_dict()))
    assert summary["shares"] == json.loads(json.dumps(shares))
    assert summary["head_importance"] == {"uniform": [[1.0, 1.0]], "one_hot": [[1.0, 1.0]]}


@pytest.mark.parametrize("hidden", [16, 32])
def test_shares_on_ladder_models_of_two_widths(tokenizer, hidden):
    size = tiny(hidden)
    model = build_model(size, tokenizer, seed=0)
    batches = lab_batches(tokenizer, ["copy", "sort"], per_task=1, size=4)
    batches["copy_again"] = batches["copy"]
    shares = neuron_allocation(model, batches).shares()
    assert shares["neurons"]["units"] == size.layers * size.intermediate
    assert shares["heads"]["units"] == size.layers * size.heads
    for kind in shares.values():
        assert sum(kind["soft_share"].values()) == pytest.approx(1.0)
        assert kind["soft_share"]["copy"] == pytest.approx(kind["soft_share"]["copy_again"])
        values = [*kind["soft_share"].values(), *kind["effective_fraction"].values()]
        assert all(0.0 <= v <= 1.0 for v in values)


class MlpOnly(torch.nn.Module):
    """A causal-LM stand-in with an MLP down projection and no attention."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(64, 4)
        self.mlp = torch.nn.ModuleDict({"down_proj": torch.nn.Linear(4, 1)})

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def forward(self, input_ids, labels, **_):
        return SimpleNamespace(loss=self.mlp["down_proj"](self.embed(input_ids)).pow(2).mean())


def test_heads_absent_or_misfitting(tokenizer):
    batches = lab_batches(tokenizer, ["copy"], per_task=1, size=2)
    found = neuron_allocation(MlpOnly(), batches)
    assert found.head_importance is None and found.head_layers is None
    assert found.shares()["heads"] is None and found.to_dict()["head_importance"] is None
    model = build_model(tiny(16), tokenizer, seed=0)
    assert [n for n, _ in attention_projections(model)] == [
        f"model.layers.{i}.self_attn.o_proj" for i in range(2)]
    model.config.head_dim = 5  # o_proj reads 16 features: not whole heads of 5
    with pytest.raises(SmolmixError, match="multiple of head_dim 5"):
        neuron_allocation(model, batches)
