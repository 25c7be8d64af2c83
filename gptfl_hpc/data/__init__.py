"""Real datasets from local roots, partitions and audio features.

Every dataset here implements one interface (``gptfl_hpc.data.base.LabeledDataset``):
``labels`` (ordered names), ``targets`` (int64 array), ``modality`` and ``ds[i] -> (x, y)`` with
``x`` a uint8 ``H x W x 3`` image or a float32 16 kHz waveform.

- ``config``: the ``data`` config section (``DataConfig``);
- ``factory``: ``open_dataset(config, split)``, ``make_partition``, ``feature_transform``;
- ``cifar``, ``flowers``, ``speech_commands``, ``esc50``, ``digits``: the readers;
- ``labels``: ``match_labels`` -- re-index a dataset to the run's label list by name, dropping
  the samples of labels the run does not use;
- ``partition``, ``partition_report``: Dirichlet / IID / speaker partitions, JSON, statistics;
- ``images``, ``waveforms``, ``audio_features``: decoding, batching, log-mel features.

The dataset over synthesis shards, ``gptfl_hpc.shards.reader.ShardDataset``, implements the same
interface; it lives with the shard format it reads.

Nothing is imported here, so that reading the config section does not pull in torch.
"""
