"""``gptfl partition CONFIG [overrides] [--png PATH] [--out PATH]``: show how clients are split.

Builds the configured partition of the dataset's train split (``data`` section) and prints one
row per client (samples, classes, classes holding at least 5 % of the client's data) and
min / median / max summaries. ``--png`` writes a clients x classes heat map; ``--out`` saves the
partition as JSON.
"""

from __future__ import annotations

import argparse
from typing import Any

from gptfl_hpc.commands.common import add_config_arguments, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("partition", help="print per-client statistics of the data partition")
    add_config_arguments(parser)
    parser.add_argument("--png", metavar="PATH", help="write a clients x classes heat map here")
    parser.add_argument("--out", metavar="PATH", help="save the partition as JSON here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    print(partition_report(config.data, config.labels.load(), png=args.png, out=args.out))
    return 0


def partition_report(data_config: Any, run_labels: list[str], png: Any = None, out: Any = None) -> str:
    """Partition the configured train split; return the statistics text, write PNG / JSON if asked.

    The dataset is matched to the run's labels by name first, so class indices are the run's.
    """
    from gptfl_hpc.data.factory import make_partition, open_dataset
    from gptfl_hpc.data.labels import match_labels
    from gptfl_hpc.data.partition import save_partition
    from gptfl_hpc.data.partition_report import describe_partition, plot_heatmap

    # Labels and clients are all a partition needs: files are listed and checked, not decoded.
    dataset = match_labels(open_dataset(data_config, "train", decode=False), run_labels)
    partition = make_partition(data_config, dataset)
    text = f"dataset {data_config.dataset} (train split)\n" + describe_partition(
        partition, dataset.targets, dataset.labels
    )
    if dataset.selection is not None:  # a label subset: say what was left out
        text = dataset.selection.describe() + "\n" + text
    if out:
        save_partition(out, partition)
        text += f"\npartition saved to {out}"
    if png:
        plot_heatmap(partition, dataset.targets, dataset.labels, png)
        text += f"\nheat map written to {png}"
    return text
