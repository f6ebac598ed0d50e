"""Engine-agnostic RL environments: search-augmented QA (Search-R1 protocol) and the
diagnostic chain on clinical cases. Each episode is driven by ``reset()`` then ``step(text)``
with the model's next action; the environment keeps the trajectory with the spans it inserted
(observations), so a trainer can mask them out of the loss."""
