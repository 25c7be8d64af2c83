"""The synthesis shard format: written by the synthesis stage, checked and read by pretraining.

A synthesis folder (``RUN/synth/``, or any folder given to ``pretrain.shards``) holds:

- ``plan.json``: the plan summary (``total``, ``samples_per_shard``, ...) and the label list,
  written before the first shard; shard ``k`` holds samples ``[k * S, min((k + 1) * S, total))``;
- ``shard-KKKKK.h5``: one HDF5 file per shard with datasets ``x`` (uint8 ``N x H x W x C`` images,
  or int16/float32 ``N x T`` audio), ``y`` (int64 indices into the shard's labels), ``index``,
  ``seed``, ``guidance``, ``prompt``, ``speaker``, with ``synth.score`` also ``score`` (float32
  prompt-sample cosine) and ``embedding`` (float16 unit sample embedding), and attributes ``labels`` (JSON list),
  ``modality``, ``complete``, ``sample_rate`` (audio), the shard's ``start``/``stop`` and the
  provenance (generator, weights, config hash); no timestamps, so the same samples give the same
  bytes;
- ``shard-KKKKK.json``: the shard's record (sha256, count, index range, class histogram);
- ``manifest.json``: the plan, the labels and every record;
- ``.partial/shard-KKKKK/START-STOP.npz``: committed blocks of a shard still being made.

Completion: a shard is assembled under a temporary name, fsynced, marked ``complete`` and renamed
into place; its record is written after the rename. A shard counts as good only when it opens,
says ``complete``, holds exactly its planned samples with the folder's labels, and its sha256
equals its record; readers refuse a folder with any planned shard not good.

- ``ranges``: which samples each shard holds (``ShardRanges``);
- ``writer``: committed blocks (``PartialShard``) and the complete HDF5 file (``write_shard``);
- ``manifest``: records, checksums, ``manifest.json``, the saved plan, and shard checks;
- ``reader``: ``checked_shard_files``, ``ShardDataset`` (torch) and ``BlockBatchSampler``.

Nothing is imported here, so that the writer and the checks do not pull in torch.
"""
