"""Stage 1 of GPT-FL: class prompts from the run's label names, written to ``RUN/prompts.json``."""
