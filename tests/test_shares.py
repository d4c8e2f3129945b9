import pytest
from hypothesis import given
from hypothesis import strategies as st

from smolmix.core.errors import SmolmixError
from smolmix.mix.shares import counts_from_shares, zipf_shares


def test_zipf_is_normalised_and_decreasing():
    shares = zipf_shares([f"t{i}" for i in range(13)], 2.0)
    values = list(shares.values())
    assert abs(sum(values) - 1) < 1e-12
    assert values == sorted(values, reverse=True)
    assert values[-1] <= 0.005


@given(st.lists(st.floats(0, 50), min_size=1, max_size=20).filter(lambda w: sum(w) > 0),
       st.integers(0, 100_000))
def test_counts_sum_to_total_within_rounding(weights, total):
    shares = {f"t{i}": w for i, w in enumerate(weights)}
    counts = counts_from_shares(shares, total)
    assert sum(counts.values()) == total
    weight = sum(weights)
    for t, w in shares.items():
        assert abs(counts[t] - total * w / weight) < 1.0


def test_bad_shares_are_user_errors():
    with pytest.raises(SmolmixError):
        counts_from_shares({"a": 0.0, "b": 0.0}, 10)
    with pytest.raises(SmolmixError):
        counts_from_shares({"a": -1.0, "b": 2.0}, 10)
