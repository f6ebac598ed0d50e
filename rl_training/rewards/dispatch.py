"""One reward function for mixed rows, dispatching per data source (verl's
``default_compute_score`` pattern): verifiable tasks keep their rule reward, open-ended rows
(``reward_model.style: model``, e.g. MedQuAD answers and chat records) go to the verifier
reward model. S3 uses it, so only rows the rules cannot check reach the judge.

>>> is_rule_task("evidex/medqa"), is_rule_task("evidex/medquad"), is_rule_task("pubmedqa")
(True, False, True)
>>> compute_score("evidex/medqa", "\\\\boxed{B}", "B")["score"]
1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rl_training.rewards import scoring

RULE_TASKS = frozenset(scoring.MCQ | {"pubmedqa", "medcalc", "diagnosis", "math"})


def is_rule_task(data_source: str) -> bool:
    """Whether the rule rewards score ``data_source``'s rows."""
    return data_source.split("/", 1)[-1].lower() in RULE_TASKS


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    style: str | None = None,
    **judge: Any,
) -> dict[str, Any]:
    """verl ``custom_reward_function``: the rule reward for verifiable tasks, else the
    verifier (``judge``: ``base_url``, ``model``, ``cache_dir`` or verl's
    ``reward_router_address``, as :func:`rl_training.rewards.vrm.compute_score` takes).

    ``style`` is the row's ``reward_model.style`` where the caller sees it (TRL does; verl
    hands its reward function no style, so there the data source decides): ``model`` rows go
    to the verifier, ``rule`` rows of a verifiable task keep the rule reward."""
    if style == "model":
        from rl_training.rewards import vrm

        return vrm.compute_score(data_source, solution_str, ground_truth, extra_info, **judge)
    if is_rule_task(data_source):
        return scoring.compute_score(data_source, solution_str, ground_truth, extra_info)
    from rl_training.rewards import vrm

    return vrm.compute_score(data_source, solution_str, ground_truth, extra_info, **judge)
