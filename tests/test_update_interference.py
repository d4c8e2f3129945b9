"""Adam-aware interference: predictions checked against real optimizer steps on a tiny Llama."""

import copy
import json

import pytest
import torch
from test_diagnose_core import lab_batches

from smolmix.core.errors import SmolmixError
from smolmix.diagnose import held_out_loss, task_gradients
from smolmix.diagnose.update_interference import group_strength, update_interference
from smolmix.models.ladder import build_model, get_size

TASKS = ["copy", "sort", "lookup"]
SHARES = {"copy": 0.6, "sort": 0.3, "lookup": 0.1}


@pytest.fixture(scope="module")
def setup(tokenizer):
    """A float64 ladder model ("xxs") after a few AdamW steps (two groups, weight decay on one,
    clipped, like the Trainer), its held-out batches and per-task held-out gradients. (HF still
    computes the loss in float32, so loss changes are trusted to ~1e-7.)"""
    model = build_model(get_size("xxs"), tokenizer, seed=0).double()
    train = lab_batches(tokenizer, TASKS, per_task=1, size=8, seed=0)
    held = lab_batches(tokenizer, TASKS, per_task=1, size=8, seed=1)
    opt = adamw(model, weight_decay=0.1)
    fit(model, opt, train, steps=4)
    return model, opt, held, task_gradients(model, held)


def adamw(model, weight_decay, cls=torch.optim.AdamW, **settings):
    """The Trainer's grouping: decay on matrices, none on norms."""
    params = list(dict.fromkeys(model.parameters()))
    return cls([{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
               lr=1e-2, **settings)


def fit(model, opt, batches, steps):
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        sum(model(**b[0]).loss for b in batches.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    opt.zero_grad(set_to_none=True)


def with_lr(model, opt, lr):
    """A copy of the model and its optimizer (state included) at learning rate ``lr``."""
    work, work_opt = copy.deepcopy((model, opt))
    for group in work_opt.param_groups:
        group["lr"] = lr
    return work, work_opt


def real_step(model, opt, grads, held, max_grad_norm=None, shares=SHARES):
    """One ``opt.step()`` fed ``G = sum p_s g_s`` (clipped by torch as the Trainer clips):
    per task, the held-out loss change and ``<g_t, theta_after - theta_before>``."""
    total = sum(shares[t] for t in grads)
    mix = sum(shares[t] / total * grads[t].double() for t in grads)
    params = list(dict.fromkeys(model.parameters()))
    before = torch.cat([p.detach().reshape(-1) for p in params])
    losses = {t: held_out_loss(model, held[t]) for t in grads}
    for p, chunk in zip(params, mix.split([p.numel() for p in params])):
        p.grad = chunk.view_as(p).to(p.dtype).clone()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    opt.step()
    moved = torch.cat([p.detach().reshape(-1) for p in params]) - before
    change = {t: held_out_loss(model, held[t]) - losses[t] for t in grads}
    return change, {t: float(grads[t].double() @ moved) for t in grads}, moved


def check(model, opt, grads, held, lr, max_grad_norm=None, shares=SHARES):
    """The prediction at ``lr`` and the real step's (loss change, <g_t, u>, u)."""
    work, work_opt = with_lr(model, opt, lr)
    before = snapshot(work, work_opt)
    result = update_interference(work, work_opt, grads, shares, max_grad_norm)
    assert snapshot(work, work_opt) == before  # read only
    return result, *real_step(work, work_opt, grads, held, max_grad_norm, shares)


def snapshot(model, opt) -> str:
    """The model's weights and the optimizer's state (entries included), comparable."""
    return json.dumps([model.state_dict(), opt.state_dict(), len(opt.state)],
                      default=lambda x: x.tolist())


def relative_error(result, change):
    return max(abs(change[t] - result.delta_total[t]) / abs(result.delta_total[t])
               for t in TASKS)


def test_adamw_prediction_is_the_first_order_loss_change(setup):
    model, opt, held, grads = setup
    errors = []
    for lr in (1e-2, 1e-3, 1e-4):
        result, change, dots, _ = check(model, opt, grads, held, lr)
        # The update itself is reconstructed exactly; the loss change to first order.
        assert result.delta_total == pytest.approx(dots, rel=1e-9)
        errors.append(relative_error(result, change))
        assert all(result.delta_history[t] != 0 and result.delta_decay[t] != 0 for t in TASKS)
        assert result.optimizer == "AdamW" and result.lr == lr and result.clip_factor == 1.0
    assert errors[2] < 0.02
    # First order, not luck: the error is second order in lr (at 1e-4 the float32 loss's
    # rounding, ~1e-7, is a visible part of it, so the rate is read from the larger two).
    assert errors[1] < errors[0] / 5
    json.dumps(result.to_dict())


def test_parts_vanish_without_history_or_weight_decay(setup):
    model, _, held, grads = setup
    for wd in (0.0, 0.1):
        fresh = adamw(model, weight_decay=wd)  # step 0: no moments yet
        result, change, dots, moved = check(model, fresh, grads, held, 1e-4)
        assert result.delta_history == dict.fromkeys(TASKS, 0.0)
        assert result.delta_total == pytest.approx(dots, rel=1e-9)
        assert relative_error(result, change) < 0.02
        # AdamW's decay is -lr wd theta on the decayed group only.
        theta = torch.cat([p.detach().reshape(-1) * (p.ndim >= 2)
                           for p in dict.fromkeys(model.parameters())])
        assert result.delta_decay == pytest.approx(
            {t: -1e-4 * wd * float(grads[t].double() @ theta) for t in TASKS}, abs=1e-15)
        if wd == 0.0:  # then the whole update is the mixture gradient's part
            strength = group_strength(model, fresh, grads, SHARES, TASKS)
            assert strength["update_norm"] == pytest.approx(float(moved.norm()) / 1e-4, rel=1e-9)


def test_split_identities_clipping_and_zero_shares(setup):
    model, opt, held, grads = setup
    result, change, dots, moved = check(model, opt, grads, held, 1e-4, max_grad_norm=0.3)
    assert 0 < result.clip_factor < 0.5
    assert result.clip_factor == pytest.approx(0.3 / result.grad_norm, rel=1e-5)
    assert result.delta_total == pytest.approx(dots, rel=1e-9)
    assert relative_error(result, change) < 0.02
    p = result.shares
    mix = sum(p[t] * grads[t].double() for t in TASKS)
    for t in TASKS:
        parts = (result.delta_self[t] + result.delta_others[t] + result.delta_history[t]
                 + result.delta_decay[t])
        assert parts == pytest.approx(result.delta_total[t], rel=1e-12)
        assert result.delta_self[t] < 0  # a task's own part always lowers its loss
        assert result.others_over_self[t] == pytest.approx(
            result.delta_others[t] / -result.delta_self[t])
    # sum_t p_t delta_total(t) = <G, u>; the gradient parts lower the mixture loss.
    assert sum(p[t] * result.delta_total[t] for t in TASKS) == pytest.approx(
        float(mix @ moved), rel=1e-9)
    assert sum(p[t] * (result.delta_self[t] + result.delta_others[t]) for t in TASKS) < 0
    strength = group_strength(model, opt, grads, SHARES, TASKS, max_grad_norm=0.3)
    assert strength["grad_norm"] == pytest.approx(result.grad_norm)
    assert group_strength(model, opt, grads, SHARES, ["sort"])["grad_norm"] == pytest.approx(
        0.3 * float(grads["sort"].norm()))
    # A share of 0: measured, but adds nothing (the others' numbers are as if it were absent).
    zero = update_interference(model, opt, grads, {**SHARES, "lookup": 0.0})
    without = update_interference(model, opt, {t: grads[t] for t in ("copy", "sort")}, SHARES)
    assert zero.delta_self["lookup"] == 0.0 and zero.to_dict()["others_over_self"]["lookup"] is None
    assert zero.delta_total["copy"] == pytest.approx(without.delta_total["copy"], rel=1e-9)
    alone = update_interference(model, opt, {"copy": grads["copy"]}, SHARES)
    assert alone.delta_others == {"copy": 0.0}


@pytest.mark.parametrize(("settings", "steps"), [
    ({"momentum": 0.9, "weight_decay": 0.01}, 2),
    ({"momentum": 0.9, "dampening": 0.5, "nesterov": False}, 2),
    ({"momentum": 0.8, "nesterov": True, "weight_decay": 0.01}, 2),
    ({"momentum": 0.8, "nesterov": True}, 0),  # no momentum buffer yet
    ({"momentum": 0.0}, 2),
])
def test_sgd_prediction_matches_a_real_step(setup, settings, steps):
    model, _, held, _ = setup
    sgd = torch.optim.SGD(list(dict.fromkeys(model.parameters())), lr=1e-2, **settings)
    work, work_opt = copy.deepcopy((model, sgd))
    fit(work, work_opt, held, steps=steps)  # the held-out batches serve: only the state matters
    work_grads = task_gradients(work, held)
    result, change, dots, _ = check(work, work_opt, work_grads, held, 1e-3)
    assert result.delta_total == pytest.approx(dots, rel=1e-9)
    assert relative_error(result, change) < 0.02
    assert (result.delta_history["copy"] != 0) == (settings["momentum"] != 0 and steps > 0)
    if settings["momentum"] == 0:  # plain SGD: the update norm per unit lr is |G|
        strength = group_strength(work, work_opt, work_grads, SHARES, TASKS)
        assert strength["update_norm"] == pytest.approx(strength["grad_norm"], rel=1e-12)


def test_adam_with_coupled_weight_decay_and_amsgrad(setup):
    model, _, held, grads = setup
    adam = adamw(model, weight_decay=0.1, cls=torch.optim.Adam, amsgrad=True)
    work, work_opt = copy.deepcopy((model, adam))
    fit(work, work_opt, held, steps=3)
    work_grads = task_gradients(work, held)
    result, change, dots, _ = check(work, work_opt, work_grads, held, 1e-4)
    assert result.optimizer == "Adam" and result.delta_total == pytest.approx(dots, rel=1e-9)
    assert relative_error(result, change) < 0.02


def test_bad_inputs_are_user_errors(setup):
    model, opt, _, grads = setup
    params = list(dict.fromkeys(model.parameters()))
    with pytest.raises(SmolmixError, match="RMSprop"):
        update_interference(model, torch.optim.RMSprop(params), grads, SHARES)
    with pytest.raises(SmolmixError, match="not held by the optimizer"):
        update_interference(model, torch.optim.AdamW(params[1:]), grads, SHARES)
    with pytest.raises(SmolmixError, match="not all zero"):
        update_interference(model, opt, grads, dict.fromkeys(TASKS, 0.0))
    with pytest.raises(SmolmixError, match="maximize"):
        update_interference(model, torch.optim.SGD(params, lr=0.1, maximize=True), grads,
                            SHARES)
    with pytest.raises(SmolmixError, match="entries"):
        update_interference(model, opt, grads, SHARES, params=params[1:])
    with pytest.raises(SmolmixError, match="max_grad_norm"):
        update_interference(model, opt, grads, SHARES, max_grad_norm=0.0)
    with pytest.raises(SmolmixError, match="'nope'"):
        group_strength(model, opt, grads, SHARES, ["copy", "nope"])
