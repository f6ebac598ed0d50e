import random

import pytest

from planner.chat import ReasoningFilter, split_reasoning


@pytest.mark.parametrize("seed", range(20))
def test_reasoning_filter_equals_split_for_any_chunking(seed: int) -> None:
    raw = (
        "<think>Weigh RCTs <b>and</b> reviews.</think>Aspirin lowers MI risk [1]. "
        "<think>x</think>Done."
    )
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(raw)), 8))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    f = ReasoningFilter()
    streamed = "".join(f.feed(p) for p in pieces) + f.flush()
    reasoning, answer = split_reasoning(raw)
    assert " ".join(streamed.split()) == " ".join(answer.split())
    assert "Weigh RCTs" in f.reasoning and "Weigh RCTs" in reasoning
    assert "<think>" not in streamed and "Weigh" not in streamed


def test_unclosed_reasoning_never_leaks_into_the_answer() -> None:
    f = ReasoningFilter()
    out = f.feed("<think>still thinking when the budget ran out") + f.flush()
    assert out == ""
    assert split_reasoning("<think>still thinking") == ("still thinking", "")
