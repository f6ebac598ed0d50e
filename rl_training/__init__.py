"""evidex training backend: training data (``data``: export, typed rows, curation, difficulty,
mix), rewards (``rewards``: rule rewards, the cosine length penalty for verl and TRL, the
verifier reward model, the search format reward), the evaluation harness (``eval``), the RL
environments (``envs``) and the trainers (``train``). See rl_training/README.md."""
