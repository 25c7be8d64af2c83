"""Stage 3: synthetic shards -> downstream model, trained with DeepSpeed."""
