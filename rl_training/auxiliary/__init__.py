"""The report's auxiliary models (section 4.4): the preference reward model (scaled
Bradley-Terry, :mod:`rl_training.auxiliary.rm`) and its pairs (:mod:`.pairs`)."""
