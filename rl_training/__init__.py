"""evidex training backend: training data (export, curation, difficulty, mix), rewards (rule
rewards, the cosine length penalty for verl and TRL, the verifier reward model, the search
format reward) and the evaluation harness. See rl_training/README.md."""
