"""evidex answers: plan -> gather -> compose -> check, with verified citations.

``from answer import Assistant`` is the Python API (:mod:`answer.pipeline`). The stages live in
their own modules: :mod:`answer.gather` (retrieve per subtask, fuse, score relevance, select),
:mod:`answer.compose` (the sources as the model sees them, the prompt, the generation, the
quoted evidence when no model can), :mod:`answer.check` (every citation against its source:
a :class:`answer.check.CitationCheck`), with the verifiers in :mod:`answer.verify` and the chat
backends in :mod:`answer.llm`.
"""

from answer.pipeline import AnswerError, Assistant
from answer.types import REVIEW_NOTICE, Answer, Citation, Reference

__all__ = ["REVIEW_NOTICE", "Answer", "AnswerError", "Assistant", "Citation", "Reference"]
