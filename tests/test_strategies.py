"""Property tests: achieved shares match requested shares for every strategy."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as hs

from smolmix.core.errors import SmolmixError
from smolmix.mix import strategies as st
from smolmix.mix.sample import Cursor, example_counts

counts_st = hs.dictionaries(hs.sampled_from([f"t{i}" for i in range(12)]),
                            hs.integers(1, 100_000), min_size=2, max_size=12)


def _buckets(counts):
    return [st.Bucket("src", t, (), c) for t, c in counts.items()]


def _achieved(shares, total):
    counts = example_counts(shares, total)
    assert sum(counts.values()) == total
    by_task: dict[str, int] = {}
    for b, n in counts.items():
        by_task[b.task] = by_task.get(b.task, 0) + n
    return {t: n / total for t, n in by_task.items()}


def _requested(shares):
    by_task: dict[str, float] = {}
    for b, s in shares.items():
        by_task[b.task] = by_task.get(b.task, 0.0) + s
    return by_task


def _assert_close(shares, total):
    achieved = _achieved(shares, total)
    limit = max(0.005, 1.0 / total)  # ±0.5 points, or one example when the budget is tiny
    for task, want in _requested(shares).items():
        assert abs(achieved.get(task, 0.0) - want) <= limit + 1e-12


@settings(max_examples=60, deadline=None)
@given(counts_st, hs.floats(0.0, 2.0), hs.integers(1, 50_000))
def test_temperature_natural_uniform(counts, alpha, total):
    shares = st.temperature(counts, alpha)
    assert abs(sum(shares.values()) - 1) < 1e-9
    if alpha == 0:
        assert max(shares.values()) - min(shares.values()) < 1e-12
    _assert_close(st.split_tasks(_buckets(counts), shares, []), total)


@settings(max_examples=60, deadline=None)
@given(counts_st, hs.floats(0.001, 0.9), hs.integers(1, 50_000))
def test_boost(counts, share, total):
    target = sorted(counts)[0]
    shares = st.boost(st.temperature(counts, 1.0), {target: share})
    assert shares[target] == share
    _assert_close(st.split_tasks(_buckets(counts), shares, []), total)


@settings(max_examples=60, deadline=None)
@given(counts_st, hs.floats(0.001, 0.2), hs.integers(1, 50_000))
def test_floor(counts, minimum, total):
    assume(minimum * len(counts) <= 1)
    shares = st.floor(st.temperature(counts, 1.0), minimum)
    assert abs(sum(shares.values()) - 1) < 1e-9
    assert min(shares.values()) >= minimum - 1e-9
    _assert_close(st.split_tasks(_buckets(counts), shares, []), total)


@settings(max_examples=60, deadline=None)
@given(hs.integers(1, 5000), hs.integers(1, 5000), hs.integers(1, 5000), hs.integers(1, 5000),
       hs.floats(0.05, 0.95), hs.floats(0.05, 0.95), hs.integers(100, 50_000))
def test_mix_long_and_mix_large_compose(a, b, c, d, long, large, total):
    buckets = [st.Bucket("ll", "math", (("cot", "long"), ("teacher", "large")), a),
               st.Bucket("ls", "math", (("cot", "long"), ("teacher", "small")), b),
               st.Bucket("sl", "math", (("cot", "short"), ("teacher", "large")), c),
               st.Bucket("ss", "math", (("cot", "short"), ("teacher", "small")), d),
               st.Bucket("x", "chat", (), 1000)]
    ratios = [st.TagRatio(*st.MIX_LONG, long, ("math",), "mix_long"),
              st.TagRatio(*st.MIX_LARGE, large, ("math",), "mix_large")]
    shares = st.split_tasks(buckets, {"math": 0.6, "chat": 0.4}, ratios)
    math_long = (shares[buckets[0]] + shares[buckets[1]]) / 0.6
    math_large = (shares[buckets[0]] + shares[buckets[2]]) / 0.6
    assert abs(math_long - long) < 1e-6 and abs(math_large - large) < 1e-6
    counts = example_counts(shares, total)
    n_math = sum(n for bk, n in counts.items() if bk.task == "math")
    got_long = (counts[buckets[0]] + counts[buckets[1]]) / max(n_math, 1)
    assert abs(got_long - long) <= max(0.005, 2.0 / max(n_math, 1))


@settings(max_examples=40, deadline=None)
@given(hs.integers(1, 200), hs.integers(1, 4), hs.integers(0, 900), hs.integers(0, 2**16))
def test_repetition_cap_never_exceeded(size, cap, want, seed):
    cursor = Cursor(st.Bucket("s", "t", (), size), list(range(size)), seed, cap)
    if want > size * cap:
        with pytest.raises(SmolmixError, match="source 's'"):
            cursor.take(want)
        return
    drawn = cursor.take(want)
    uses: dict[int, int] = {}
    for r in drawn:
        uses[r] = uses.get(r, 0) + 1
    assert max(uses.values(), default=0) <= cap
    assert max(uses.values(), default=0) - min(uses.values(), default=0) <= 1 or len(uses) < size


def test_bad_strategy_values_are_user_errors():
    with pytest.raises(SmolmixError, match="above 1"):
        st.boost({"a": 0.5, "b": 0.5, "c": 0.0}, {"a": 0.6, "b": 0.6})
    with pytest.raises(SmolmixError, match=r"\(0, 1\)"):
        st.floor({"a": 0.5, "b": 0.5}, 0.0)
    with pytest.raises(SmolmixError, match="above 1"):
        st.floor({"a": 0.5, "b": 0.5, "c": 0.0}, 0.4)
    with pytest.raises(SmolmixError, match="all zero"):
        st.temperature({"a": 0, "b": 0}, 1.0)
    only_short = [st.Bucket("s", "math", (("cot", "short"),), 10)]
    with pytest.raises(SmolmixError, match="cot=long"):
        st.split_tasks(only_short, {"math": 1.0},
                       [st.TagRatio(*st.MIX_LONG, 0.2, ("math",), "mix_long")])


def test_task_counts_add_up_every_source_of_a_task():
    buckets = [st.Bucket("a", "math", (), 30), st.Bucket("b", "math", (), 10),
               st.Bucket("c", "chat", (), 40)]
    counts = st.task_counts(buckets)
    assert counts == {"math": 40, "chat": 40}
    assert st.temperature(counts, 1.0) == {"math": 0.5, "chat": 0.5}


def test_weights_of_known_and_unknown_tasks():
    assert st.weights({"a": 5, "b": 5, "c": 5}, {"a": 3, "b": 1}) == {"a": 0.75, "b": 0.25,
                                                                       "c": 0.0}
    with pytest.raises(SmolmixError, match="'z'"):
        st.weights({"a": 5}, {"a": 1, "z": 1})


def test_boost_and_floor_refuse_shares_at_the_edges():
    shares = {"a": 0.5, "b": 0.5}
    for share in (0.0, 1.0):
        with pytest.raises(SmolmixError):
            st.boost(shares, {"a": share})
    assert st.boost({"a": 0.2, "b": 0.3, "c": 0.5}, {"a": 0.5}) == pytest.approx(
        {"a": 0.5, "b": 0.3 * 0.5 / 0.8, "c": 0.5 * 0.5 / 0.8})
    # a task exactly at the floor is not moved
    assert st.floor({"a": 0.1, "b": 0.9}, 0.1) == {"a": 0.1, "b": 0.9}
