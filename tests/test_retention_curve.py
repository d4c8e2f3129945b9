import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch

from smolmix.core.errors import SmolmixError
from smolmix.diagnose.retention_curve import (
    RetentionCurve,
    copy_optimizer,
    default_points,
    half_life,
    retention_curves,
)
from smolmix.lab.tasks import TASKS, make_eval_set
from smolmix.models.ladder import build_model, get_size
from smolmix.train.data import padded_batches
from smolmix.train.encoding import encode_prompt_completion

G = (1.0, 2.0, 2.0)  # |G|^2 = 9


class Toy(torch.nn.Module):
    """``loss = <w, x> + 0.5 |w - anchor|^2`` (the second term only when the batch has an
    anchor): gradients known by hand, so retention can be checked exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 3))
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x, labels, anchor=None, **_):
        loss = (self.w * x).sum()
        if anchor is not None:
            loss = loss + 0.5 * ((self.w - anchor) ** 2).sum()
        return SimpleNamespace(loss=loss)


def toy_batch(x=(0.0, 0.0, 0.0), anchor=None, targets: int = 2) -> dict[str, torch.Tensor]:
    labels = torch.tensor([[-100] + [7] * targets])
    batch = {"x": torch.tensor(x), "labels": labels, "input_ids": torch.zeros_like(labels)}
    return batch if anchor is None else {**batch, "anchor": anchor.detach().clone()}


def toy_run(mixture, n_max=8, **settings):
    model = Toy().train()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    mix = mixture(model) if callable(mixture) else mixture
    curves = retention_curves(model, opt, {"a": [toy_batch(G)]}, mix,
                              {"a": [toy_batch(G, targets=5)]}, n_max=n_max, **settings)
    return model, curves["a"]


def test_a_mixture_without_gradient_keeps_everything():
    model, curve = toy_run([toy_batch(), toy_batch(targets=0)])
    assert curve.points == [0, 1, 2, 4, 8]
    assert curve.gain == pytest.approx(9.0)
    assert curve.retention == [1.0] * 5 and curve.retention_raw == [1.0] * 5
    assert curve.half_life is None and curve.censored_at == 8 and curve.reason is None
    assert model.training and model.drop.training and model.w.grad is None
    json.dumps(curve.to_dict())


def test_a_mixture_that_undoes_the_task_step_keeps_nothing():
    # SGD lr=1 on 0.5|w - w_start|^2: one mixture step puts either branch back at w_start.
    model, curve = toy_run(lambda m: [toy_batch(anchor=m.w)], n_max=4)
    assert curve.retention[0] == 1.0 and curve.retention_raw[0] == 1.0
    assert curve.retention[1:] == pytest.approx([0.0] * 3, abs=1e-6)
    assert curve.retention_raw[1:] == pytest.approx([0.0] * 3, abs=1e-6)
    assert curve.half_life == pytest.approx(0.5) and curve.censored_at is None


def test_several_tasks_share_the_control_and_points_are_checked():
    model = Toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tasks = {"b": [toy_batch(G)], "a": [toy_batch((0.0, 0.0, 1.0))]}
    held = {"a": [toy_batch(G)], "b": [toy_batch(G)], "extra": [toy_batch(G)]}
    curves = retention_curves(model, opt, tasks, [toy_batch((1.0, 0.0, 0.0))], held, k=2,
                              n_max=5, points=[3, 1])
    assert list(curves) == ["a", "b"]
    assert curves["a"].points == [0, 1, 3, 5] and curves["a"].k == 2
    assert curves["a"].loss_without == curves["b"].loss_without
    # A linear loss: the mixture moves both branches alike, so the counterfactual keeps it all,
    # while the raw view also counts the mixture's own drift of the task loss (-0.1 per step).
    assert curves["b"].gain == pytest.approx(2 * 0.1 * 9)
    assert curves["b"].retention == pytest.approx([1.0] * 4)
    assert curves["b"].retention_raw == pytest.approx([1 + 0.1 * n / 1.8 for n in (0, 1, 3, 5)])
    assert default_points(1) == [0, 1] and default_points(6) == [0, 1, 2, 4, 6]


def test_half_life_interpolates_and_censors():
    points = [0, 1, 2, 4, 8]
    assert half_life(points, [1.0, 0.9, 0.7, 0.6, 0.3]) == pytest.approx(4 * 2 ** (1 / 3))
    assert half_life(points, [1.0, 0.5, 0.2, 0.1, 0.0]) == pytest.approx(1.0)
    assert half_life([0, 4], [1.0, 0.0]) == pytest.approx(2.0)
    assert half_life(points, [1.0, 0.9, 0.8, 0.7, 0.6]) is None
    falls = RetentionCurve.from_losses("t", 1, points, [1.0, 1.1, 1.3, 1.4, 1.7], [2.0] * 5)
    assert falls.retention == pytest.approx([1.0, 0.9, 0.7, 0.6, 0.3])
    assert falls.half_life == pytest.approx(4 * 2 ** (1 / 3)) and falls.censored_at is None
    stays = RetentionCurve.from_losses("t", 1, points, [1.0, 1.1, 1.2, 1.3, 1.4], [2.0] * 5)
    assert stays.half_life is None and stays.censored_at == 8
    # The mixture lowers the loss without the task step too: raw retention overstates.
    drift = RetentionCurve.from_losses("t", 1, [0, 1], [1.0, 0.8], [2.0, 1.6])
    assert drift.retention == pytest.approx([1.0, 0.8])
    assert drift.retention_raw == pytest.approx([1.0, 1.2])
    flat = RetentionCurve.from_losses("t", 3, points, [2.0] * 5, [2.0] * 5)
    assert flat.retention == [None] * 5 and flat.retention_raw == [None] * 5
    assert flat.half_life is None and flat.censored_at is None and "did not lower" in flat.reason


def lab_batches(tokenizer, tasks, size, seed=0):
    """One padded batch of ``size`` lab examples for each task."""
    out = {}
    for name in tasks:
        recs = make_eval_set(TASKS[name], size, seed=seed)
        enc = encode_prompt_completion(tokenizer, [r.prompt for r in recs],
                                       [r.completion for r in recs])
        out[name] = padded_batches(enc, size, tokenizer.pad_token_id)
    return out


def trained_lab_model(tokenizer, batches):
    """A ladder model after 3 AdamW steps with the Trainer's two param groups and a schedule."""
    model = build_model(get_size("xxs"), tokenizer, seed=0).train()
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / 10)
    for step in range(3):
        batch = batches[("copy", "sort", "lookup")[step]][0]
        model(**batch).loss.backward()
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
    return model, opt


def snapshot(model, opt):
    return {k: v.clone() for k, v in model.state_dict().items()}, copy.deepcopy(opt.state_dict())


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_on_a_ladder_model_with_live_adamw(tokenizer):
    batches = lab_batches(tokenizer, ["copy", "sort", "lookup", "reverse"], size=8)
    held = lab_batches(tokenizer, ["copy", "sort"], size=8, seed=1)
    model, opt = trained_lab_model(tokenizer, batches)
    before = snapshot(model, opt)
    curves = retention_curves(model, opt, {t: batches[t] for t in ("copy", "sort")},
                              batches["lookup"] + batches["reverse"], held, k=2, n_max=4)
    assert same(snapshot(model, opt), before)
    assert model.training and all(p.grad is None for p in model.parameters())
    for curve in curves.values():
        assert curve.points == [0, 1, 2, 4] and curve.gain > 0 and curve.reason is None
        assert all(math.isfinite(v) for v in curve.retention + curve.retention_raw)
        assert (curve.half_life is None) != (curve.censored_at is None)
        json.dumps(curve.to_dict())
    # The copied optimiser continues exactly as a deep copy of model and optimiser would.
    by_hand_model, by_hand_opt = copy.deepcopy((model, opt))
    mine = copy.deepcopy(model)
    mine_opt = copy_optimizer(opt, model, mine)
    assert [g["lr"] for g in mine_opt.param_groups] == [g["lr"] for g in opt.param_groups]
    assert mine_opt.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.7)
    assert mine.lm_head.weight is mine.model.embed_tokens.weight  # tied, held once
    assert len(mine_opt.state) == len(opt.state) == len(list(model.parameters()))
    for m, o in ((by_hand_model, by_hand_opt), (mine, mine_opt)):
        m(**batches["reverse"][0]).loss.backward()
        o.step()
    assert same(snapshot(mine, mine_opt), snapshot(by_hand_model, by_hand_opt))
    assert same(snapshot(model, opt), before)


class NeedsExtra(torch.optim.SGD):
    def __init__(self, params, extra):
        super().__init__(params, lr=0.1)


def test_bad_settings_are_user_errors():
    model = Toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    task, held, mix = {"a": [toy_batch(G)]}, {"a": [toy_batch(G)]}, [toy_batch()]
    for settings, match in (({"k": 0}, "k >= 1"), ({"n_max": 0}, "n_max >= 1"),
                            ({"points": [9]}, "points")):
        with pytest.raises(SmolmixError, match=match):
            retention_curves(model, opt, task, mix, held, **{"n_max": 8, **settings})
    with pytest.raises(SmolmixError, match="held-out batches for task"):
        retention_curves(model, opt, {**task, "b": [toy_batch(G)]}, mix, held)
    with pytest.raises(SmolmixError, match="mixture"):
        retention_curves(model, opt, task, [], held)
    stray = torch.optim.SGD([model.w, torch.nn.Parameter(torch.ones(2))], lr=0.1)
    with pytest.raises(SmolmixError, match="not in the model"):
        retention_curves(model, stray, task, mix, held)
    model.extra = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(SmolmixError, match="extra are not in the optimizer"):
        copy_optimizer(opt, model, copy.deepcopy(model))
    with pytest.raises(SmolmixError, match="cannot copy the NeedsExtra"):
        copy_optimizer(NeedsExtra(model.parameters(), 1), model, copy.deepcopy(model))


def test_a_copy_of_a_model_whose_forward_a_trainer_replaced_runs_its_own_weights():
    """TRL and accelerate set ``model.forward`` on the instance to a closure over the original
    module; a plain deep copy would keep calling the original. ``detached_copy`` does not."""
    import types

    from smolmix.diagnose.batches import detached_copy

    original = torch.nn.Linear(2, 1, bias=False)
    bound = original.forward
    original.forward = types.MethodType(lambda self, x: bound(x), original)
    copy_ = detached_copy(original)
    with torch.no_grad():
        copy_.weight.fill_(3.0)
        original.weight.fill_(1.0)
    x = torch.ones(1, 2)
    assert original(x).item() == 2.0
    assert copy_(x).item() == 6.0
