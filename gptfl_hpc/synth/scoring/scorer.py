"""Scoring generated samples: the cosine of a CLIP/CLAP model's prompt and sample embeddings.

A sample's score and embedding must depend only on the sample and its prompt -- like the sample
itself -- so that shards are the same bytes whatever the batch size, the task split or a resume.
A matrix product's rounding may depend on how many rows it multiplies, so the model sees one sample
(and one prompt) per call; the prompt's embedding is computed once per prompt and reused. The
score model is small next to a diffusion or speech model, so this costs little of a task's time.

What is scored is the sample as stored (the uint8 image, the int16 clip), so a score can be
recomputed from the shard alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gptfl_hpc.synth.scoring.kinds import ScoreFamily

#: Shard datasets written when scoring is on.
SCORE, EMBEDDING = "score", "embedding"


def _features(output: Any) -> torch.Tensor:
    """The projected embedding: transformers returns a tensor or an output whose pooler_output it is."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class SampleScorer:
    """A loaded score model on ``device``; ``score`` turns generated samples into scores and embeddings."""

    def __init__(self, family: ScoreFamily, model_dir: Path, device: torch.device,
                 sample_rate: Optional[int] = None) -> None:
        import transformers

        self.family = family
        self.device = device
        self.sample_rate = sample_rate
        # float32 whatever the generator's dtype: the score is a small number compared across samples.
        self.model = getattr(transformers, family.saved_class).from_pretrained(model_dir, dtype=torch.float32)
        self.model.to(device).eval()
        self.processor = getattr(transformers, family.processor_class).from_pretrained(model_dir)
        self._prompts: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def score(self, prompts: Sequence[str], samples: np.ndarray) -> dict[str, np.ndarray]:
        """``score`` (float32 cosine per sample) and ``embedding`` (its unit sample embedding, float16)."""
        texts = torch.stack([self._prompt_embedding(prompt) for prompt in prompts])
        embedded = torch.stack([self._sample_embedding(sample) for sample in samples])
        scores = (texts * embedded).sum(dim=-1)
        return {
            SCORE: scores.float().cpu().numpy().astype(np.float32),
            EMBEDDING: embedded.cpu().numpy().astype(np.float16),
        }

    def _prompt_embedding(self, prompt: str) -> torch.Tensor:
        if prompt not in self._prompts:
            tokens = self.processor.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt")
            features = _features(self.model.get_text_features(**tokens.to(self.device)))
            self._prompts[prompt] = F.normalize(features.float(), dim=-1)[0]
        return self._prompts[prompt]

    def _sample_embedding(self, sample: np.ndarray) -> torch.Tensor:
        if self.family.name == "clip":
            pixels = self.processor.image_processor([sample], return_tensors="pt")["pixel_values"]
            features = self.model.get_image_features(pixel_values=pixels.to(self.device))
        else:
            features = self.model.get_audio_features(**self._audio_inputs(sample))
        return F.normalize(_features(features).float(), dim=-1)[0]

    def _audio_inputs(self, clip: np.ndarray) -> dict[str, torch.Tensor]:
        from gptfl_hpc.data.waveforms import pcm_to_float, to_mono_rate

        extractor = self.processor.feature_extractor
        rate = int(extractor.sampling_rate)
        waveform = to_mono_rate(pcm_to_float(np.asarray(clip)), self.sample_rate or rate, rate)
        # Longer clips would be cut at a random offset (or fused from random chunks): keep the start.
        waveform = waveform[: int(extractor.nb_max_samples)]
        inputs = extractor([waveform], sampling_rate=rate, return_tensors="pt")
        return {key: value.to(self.device) for key, value in inputs.items()
                if key in ("input_features", "is_longer")}

