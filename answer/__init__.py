"""evidex answers: plan -> retrieve -> generate, with verified citations.

``from answer import Assistant`` is the Python API; see :mod:`answer.pipeline`.
"""

from answer.pipeline import AnswerError, Assistant
from answer.types import REVIEW_NOTICE, Answer, Citation, Reference

__all__ = ["REVIEW_NOTICE", "Answer", "AnswerError", "Assistant", "Citation", "Reference"]
