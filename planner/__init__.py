"""evidex planner: an LLM breaks a clinical question into subtasks with search queries.

:class:`planner.planner.Planner` writes a :class:`planner.types.Plan`; the chat-model protocol
it uses (:class:`planner.chat.ChatModel`) is implemented in :mod:`answer.llm`.
"""
