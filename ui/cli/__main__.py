"""``python -m ui.cli``: the ``evidex`` command line."""

from ui.cli import main

main()
