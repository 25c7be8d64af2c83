"""A quality score per synthetic sample: the cosine of a CLIP/CLAP model's prompt and sample embeddings.

- ``config``: the ``synth.score`` section;
- ``kinds``: the score kinds (``clip``, ``clap``, ``tiny``), which modality each scores and which
  saved class it loads; where the model is, checked without loading it;
- ``tiny``: tiny random CLIP/CLAP models for tests, built from config and saved like real ones;
- ``scorer``: the loaded model, scoring generated samples as they are made (torch);
- ``stats``: per-class score distributions and near-duplicate counts read back from shards.

Nothing is imported here, so the config and the checks stay torch-free.
"""
