import json

import pytest

from planner.chat import ChatError
from planner.planner import Planner, detect_language, fallback_plan
from planner.types import Plan, PlanFilters, Subtask
from retrieval.settings import PlannerSettings
from tests.scripted_chat import ScriptedChat

Q = "Does aspirin reduce the risk of stroke in patients with atrial fibrillation?"
ALWAYS = PlannerSettings(use_llm="always")


def _plan_json(**over: object) -> str:
    sub = {
        "id": "s1",
        "question": "Does aspirin prevent stroke in atrial fibrillation?",
        "queries": ["aspirin stroke atrial fibrillation", "antiplatelet AF stroke prevention"],
        "filters": {"year_from": 2010, "evidence_levels": ["systematic_review"]},
        "depends_on": [],
    }
    sub.update(over)
    second = {
        "id": "s2",
        "question": "What are the bleeding risks of aspirin?",
        "queries": ["aspirin bleeding risk"],
        "depends_on": ["s1"],
    }
    return "Here is the plan:\n```json\n" + json.dumps({"subtasks": [second, sub]}) + "\n```"


def test_a_valid_model_plan_is_used_with_filters_and_dependencies() -> None:
    chat = ScriptedChat(_plan_json())
    out = Planner(chat, ALWAYS).plan(Q, patient_summary="72-year-old female.")
    plan = out.plan
    assert plan.origin == "llm" and len(out.calls) == 1
    s1 = next(s for s in plan.subtasks if s.id == "s1")
    assert s1.filters.year_from == 2010 and s1.filters.evidence_levels == ("systematic_review",)
    assert [s.id for s in plan.ordered()] == ["s1", "s2"]  # dependency first
    # the question itself is always searched
    assert any(q == Q for s in plan.subtasks for q in s.queries)
    assert "72-year-old female" in chat.sent[0][-1].content


def test_invalid_output_gets_one_repair_then_the_fallback() -> None:
    chat = ScriptedChat("I think you should search PubMed.", _plan_json())
    out = Planner(chat, ALWAYS).plan(Q)
    assert out.plan.origin == "repaired" and len(out.calls) == 2
    assert "not a valid plan" in chat.sent[1][-1].content  # the error is fed back

    chat = ScriptedChat("no json", '{"subtasks": "nope"}')
    out = Planner(chat, ALWAYS).plan(Q)
    assert out.plan.origin == "fallback" and "invalid" in out.plan.note
    assert out.plan.subtasks[0].queries[0] == Q


def test_placeholder_queries_copied_from_the_prompt_are_rejected() -> None:
    bad = json.dumps(
        {"subtasks": [{"id": "s1", "question": "sub-question", "queries": ["search query"]}]}
    )
    out = Planner(ScriptedChat(bad), ALWAYS).plan(Q)
    assert out.plan.origin == "fallback"
    assert "question's terms" in out.plan.note


def test_model_down_gives_the_fallback_plan() -> None:
    out = Planner(ScriptedChat(ChatError("connection refused")), ALWAYS).plan(Q)
    assert out.plan.origin == "fallback" and "unavailable" in out.plan.note


def test_chinese_question_needs_english_queries() -> None:
    zh = "阿司匹林能降低房颤患者的卒中风险吗？"
    only_zh = json.dumps({"subtasks": [{"id": "s1", "question": zh, "queries": [zh]}]})
    out = Planner(ScriptedChat(only_zh, only_zh), ALWAYS).plan(zh)
    assert out.plan.origin == "fallback" and "English" in out.plan.note
    good = json.dumps(
        {
            "subtasks": [
                {"id": "s1", "question": zh, "queries": ["aspirin stroke atrial fibrillation"]}
            ]
        }
    )
    out = Planner(ScriptedChat(good), ALWAYS).plan(zh)
    assert out.plan.origin == "llm" and out.plan.language == "zh"
    assert "aspirin stroke atrial fibrillation" in out.plan.subtasks[0].queries


def test_caps_and_bad_subtasks() -> None:
    many = {
        "subtasks": [
            {
                "id": f"s{i}",
                "question": f"aspirin question {i}",
                "queries": ["aspirin a", "aspirin b", "aspirin c", "aspirin d"],
            }
            for i in range(9)
        ]
    }
    plan = (
        Planner(
            ScriptedChat(json.dumps(many)),
            PlannerSettings(use_llm="always", max_subtasks=2, max_queries=2),
        )
        .plan(Q)
        .plan
    )
    assert len(plan.subtasks) == 2 and all(len(s.queries) <= 2 for s in plan.subtasks)
    cyclic = {
        "subtasks": [
            {"id": "s1", "question": "aspirin", "queries": ["aspirin"], "depends_on": ["s9"]}
        ]
    }
    assert Planner(ScriptedChat(json.dumps(cyclic)), ALWAYS).plan(Q).plan.origin == "fallback"


def test_planning_is_skipped_for_the_tiny_default_model_in_auto_mode() -> None:
    chat = ScriptedChat(_plan_json())
    chat.is_default_embedded = True  # type: ignore[attr-defined]
    out = Planner(chat, PlannerSettings()).plan(Q)
    assert out.plan.origin == "fallback" and chat.sent == []
    assert Planner(chat, ALWAYS).plan(Q).plan.origin == "llm"


def test_follow_up_queries_from_the_model_or_deterministic() -> None:
    plan = fallback_plan(Q)
    missing = list(plan.subtasks)
    chat = ScriptedChat(
        json.dumps(
            {"queries": {"s1": ["warfarin versus aspirin AF stroke", "unrelated cooking recipe"]}}
        )
    )
    extra, calls = Planner(chat, ALWAYS).follow_up(plan, missing, 1)
    assert [s.id for s in extra] == ["s1.f1"] and len(calls) == 1
    assert extra[0].queries == ("warfarin versus aspirin AF stroke",)  # off-topic dropped
    # no model: a reformulation not tried before
    extra, _ = Planner(None).follow_up(plan, missing, 1)
    assert extra and all(q not in plan.subtasks[0].queries for q in extra[0].queries)
    plan2 = plan.model_copy(update={"follow_ups": tuple(extra)})
    extra2, _ = Planner(None).follow_up(plan2, missing, 2)
    tried = {q for s in (*plan2.subtasks, *plan2.follow_ups) for q in s.queries}
    assert all(q not in tried for s in extra2 for q in s.queries)


def test_plan_model_rejects_bad_structure() -> None:
    sub = Subtask(id="s1", question="q", queries=("a",))
    with pytest.raises(ValueError, match="repeat"):
        Plan(question="q", subtasks=(sub, sub), origin="llm")
    with pytest.raises(ValueError, match="non-empty"):
        Subtask(id="s1", question="q", queries=("  ",))
    assert PlanFilters().evidence_levels == ()


def test_language_detection() -> None:
    assert detect_language(Q) == "en"
    assert detect_language("二甲双胍 metformin 安全吗") == "zh"


def test_real_embedded_model_always_yields_a_valid_plan() -> None:
    """SmolLM2 writes whatever it writes; the planner must still return a valid plan."""
    from answer.llm import LlamaCppChat
    from retrieval.settings import LLMSettings

    chat = LlamaCppChat(LLMSettings(context_tokens=2048, threads=2))
    out = Planner(chat, PlannerSettings(use_llm="always", max_tokens=120)).plan(Q)
    assert isinstance(out.plan, Plan) and out.calls
    assert any(q == Q for s in out.plan.subtasks for q in s.queries)
