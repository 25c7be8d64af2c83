"""Stage 2: prompts -> samples. A deterministic plan, generators, HDF5 shards, resumable tasks."""
