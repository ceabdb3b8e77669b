import itertools

import pytest

from tokenweave.errors import InvalidArgumentError
from tokenweave.workloads import WindowPlan, WindowSpan, group_into_shards


@pytest.mark.parametrize("length", [1, 5, 253, 254, 255, 477, 478, 479, 1000, 5001])
@pytest.mark.parametrize(("window", "overlap"), [(256, 32), (256, 0), (16, 7), (3, 0)])
def test_windows_cover_the_document_and_share_exactly_the_overlap(
    length: int, window: int, overlap: int
) -> None:
    plan = WindowPlan.validated(window, overlap, max_window=512)
    spans = plan.spans(0, length)
    assert spans[0].start == 0
    assert spans[-1].end == length
    for span in spans:
        assert 0 < span.tokens <= window - 2
    for left, right in itertools.pairwise(spans):
        assert left.end - right.start == overlap
        assert right.start > left.start


def test_a_short_document_is_one_window() -> None:
    assert WindowPlan(256, 32).spans(3, 10) == [WindowSpan(3, 0, 10)]


def test_window_count_for_a_long_document() -> None:
    # 254 text tokens per window, stride 222: windows start at 0, 222, ..., until one reaches 1000.
    spans = WindowPlan(256, 32).spans(0, 1000)
    assert [s.start for s in spans] == [0, 222, 444, 666, 888]
    assert spans[-2] == WindowSpan(0, 666, 920)
    assert spans[-1] == WindowSpan(0, 888, 1000)


@pytest.mark.parametrize(
    ("window", "overlap", "message"),
    [
        (513, 32, "above the model's maximum of 512"),
        (256, 256, "overlap=256 must be smaller than window=256"),
        (256, 300, "overlap=300 must be smaller than window=256"),
        (256, 254, "smaller than the window's 254 text tokens"),
        (2, 0, "leaves no room for text"),
    ],
)
def test_bad_plans_are_refused_with_a_message_naming_the_field(
    window: int, overlap: int, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        WindowPlan.validated(window, overlap, max_window=512)


def test_a_document_without_tokens_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="document 4 has no tokens"):
        WindowPlan(256, 32).spans(4, 0)


def test_shards_keep_window_order_and_sizes() -> None:
    spans = WindowPlan(16, 4).spans(0, 100) + WindowPlan(16, 4).spans(1, 30)
    shards = group_into_shards(spans, 4)
    assert [w for s in shards for w in s.windows] == spans
    assert all(len(s.windows) == 4 for s in shards[:-1])
    assert [s.first_window for s in shards] == list(range(0, len(spans), 4))
    assert shards[0].model_tokens == sum(w.tokens + 2 for w in spans[:4])


def test_shard_size_must_be_positive() -> None:
    with pytest.raises(InvalidArgumentError, match="windows_per_shard=0"):
        group_into_shards([WindowSpan(0, 0, 1)], 0)
