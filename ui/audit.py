"""The chat's audit log lives in :mod:`answer.audit`, shared with the answer API."""

from answer.audit import QuestionMode, audit, question_fields

__all__ = ["QuestionMode", "audit", "question_fields"]
