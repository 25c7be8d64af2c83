"""Label names for GPT-FL prompts; ``iblt`` (masked by ``gptfl_hpc.secure_sum``) discovers them without a per-client view."""

from gptfl_hpc.prompts.iblt import load_label_union

__all__ = ["load_label_union"]
