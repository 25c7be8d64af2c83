"""Real datasets from local roots, partitions and audio features.

Every dataset here implements one interface (``gptfl_hpc.data.base.LabeledDataset``):
``labels`` (ordered names), ``targets`` (int64 array), ``modality`` and ``ds[i] -> (x, y)`` with
``x`` a uint8 ``H x W x 3`` image or a float32 16 kHz waveform.

- ``config``: the ``data`` config section (``DataConfig``);
- ``registry``: every reader, by its ``data.dataset`` name (``register_dataset``);
- ``factory``: ``open_dataset(config, split)``, ``open_run_dataset``, ``make_partition``,
  ``feature_transform``;
- ``cifar``, ``flowers``, ``food101``, ``speech_commands``, ``esc50``, ``digits``: published layouts;
  ``folder`` and ``hf``: class folders and saved Hugging Face datasets of any content;
- ``decoded``: files or encoded bytes decoded once into a memory-mapped cache;
- ``holdout``: the seeded per-class test share of data published without a test split;
- ``labels``: ``match_labels`` -- re-index a dataset to the run's label list by name, dropping
  the samples of labels the run does not use;
- ``partition``, ``partition_report``: Dirichlet / IID / natural (speaker) partitions, JSON, statistics;
- ``images``, ``waveforms``, ``audio_features``: decoding, batching, log-mel features.

The dataset over synthesis shards, ``gptfl_hpc.shards.reader.ShardDataset``, implements the same
interface; it lives with the shard format it reads.

Nothing is imported here, so that reading the config section does not pull in torch.
"""
