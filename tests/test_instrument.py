import pytest

from outreach.study.instrument import load_instrument


@pytest.mark.parametrize("items, mean, bond, goal_task", [
    ([6, 6, 6, 6, 6, 6], 6.0, 6.0, 6.0),
    ([0, 1, 2, 3, 4, 5], 2.5, 7 / 3, 8 / 3),
    ([None, 1, 2, 3, 4, 5], 3.0, 7 / 3, 4.0),       # 5 answered: mean of 5
    ([None, None, 2, 3, 4, 5], None, 3.0, 4.0),      # 4 answered: no mean; bond has 2 of 3
    ([1, None, None, 3, 4, 5], None, None, 3.0),     # bond has 1 of 3
])
def test_alliance_scoring_rules(items, mean, bond, goal_task):
    inst = load_instrument("alliance6")
    got_mean, subs = inst.score(items)
    assert got_mean == (None if mean is None else pytest.approx(mean, abs=1e-4))
    assert subs["bond"] == (None if bond is None else pytest.approx(bond, abs=1e-4))
    assert subs["goal_task"] == (None if goal_task is None else pytest.approx(goal_task, abs=1e-4))


def test_instrument_columns_come_from_data():
    inst = load_instrument("alliance6")
    assert inst.columns == [f"alliance_{i}" for i in range(1, 7)]
    with pytest.raises(ValueError, match="unknown instrument"):
        load_instrument("nope")
