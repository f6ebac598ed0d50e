"""Training jobs: :mod:`rl_training.train.jobs` (``TrainArgs`` -> verl or TRL), the verl stage
configs and tools (``verl_launch``, ``verl_tools``), the TRL local trainer (``trl_config``,
``trl_stages``, ``trl_local``, ``trl_envs``), checkpoint merging (``merge``) and training
curves (``metrics``)."""
