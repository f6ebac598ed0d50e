"""Training jobs: checkpoint merging (and, next, the verl and TRL launchers)."""
