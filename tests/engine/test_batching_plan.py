from embedserve.embedder import plan_batches


def test_batches_respect_padded_token_budget_and_sort_by_length() -> None:
    lengths = [5, 100, 7, 100, 6, 50, 8]
    batches = plan_batches(lengths, budget=210, max_count=10)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert max(lengths[i] for i in b) * len(b) <= 210
    assert batches[0] == [1, 3]  # the two longest together, not padding the short ones
    assert batches[1] == [5, 6, 2, 4]  # then longest first, filled up to the budget
    assert batches[2] == [0]


def test_count_cap_and_oversized_single_item() -> None:
    batches = plan_batches([300, 1, 1, 1], budget=100, max_count=2)
    assert batches[0] == [0]  # one item over the budget still runs, alone
    assert all(len(b) <= 2 for b in batches)
