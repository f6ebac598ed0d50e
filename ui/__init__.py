"""evidex user interfaces: the ``evidex`` command line (:mod:`ui.cli`, thin commands over the
library) and the clinicians' Streamlit chat (:mod:`ui.chat_app`, started by
:mod:`ui.chat_launch`; users in :mod:`ui.auth`, feedback in :mod:`ui.feedback`, the audit log
in :mod:`ui.audit`)."""
