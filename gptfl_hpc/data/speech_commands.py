"""Google Speech Commands v2 from its published folder layout.

Expected layout::

    ROOT/<word>/<speaker>_nohash_<n>.wav   # one folder per word, 16 kHz mono WAV
    ROOT/validation_list.txt               # "<word>/<file>.wav" per line
    ROOT/testing_list.txt
    ROOT/_background_noise_/               # ignored

The label list is always the 35 words of v2 in alphabetical order, so class indices do not
depend on which folders are present; a run on fewer words (the 10 keywords of the usual
keyword-spotting setup) drops the other words' samples, and their speaker ids, when the split is
matched to the run's labels (``gptfl_hpc.data.labels.match_labels``). The speaker id (``speakers``) is the file name before
``_nohash_``; the train split is every file in neither list. Samples are float32 waveforms at
16 kHz (clips are at most one second; they are not padded here).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from gptfl_hpc.data.base import LabeledDataset
from gptfl_hpc.data.registry import OpenOptions, register_dataset
from gptfl_hpc.data.roots import PathLike, require_file, require_root
from gptfl_hpc.data.waveforms import read_wav
from gptfl_hpc.errors import UserError

SPEECH_COMMANDS_V2_WORDS = (
    "backward bed bird cat dog down eight five follow forward four go happy house learn left marvin "
    "nine no off on one right seven sheila six stop three tree two up visual wow yes zero"
).split()
HOLDS = "the word folders, validation_list.txt and testing_list.txt"
SPLITS = ("train", "val", "test")


@register_dataset("speech_commands", "Speech Commands", "speech")
def open_speech_commands(config, split: str, options: OpenOptions) -> "SpeechCommands":
    return SpeechCommands(config.root, split)


class SpeechCommands(LabeledDataset):
    modality = "speech"

    def __init__(self, root: Optional[PathLike], split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; use one of {SPLITS}")
        self.root = require_root(root, "Speech Commands", HOLDS)
        self.labels = list(SPEECH_COMMANDS_V2_WORDS)
        held_out = {
            "val": _read_list(require_file(self.root, "validation_list.txt", "Speech Commands", HOLDS)),
            "test": _read_list(require_file(self.root, "testing_list.txt", "Speech Commands", HOLDS)),
        }
        all_files = self._scan()
        if split == "train":
            excluded = held_out["val"] | held_out["test"]
            files = [f for f in all_files if f not in excluded]
        else:
            files = [f for f in all_files if f in held_out[split]]
        class_index = {word: k for k, word in enumerate(self.labels)}
        self.files = files
        self.targets = np.array([class_index[f.split("/", 1)[0]] for f in files], dtype=np.int64)
        self.speakers = np.array([speaker_of(f) for f in files], dtype=str)
        self.client_ids = self.speakers  # the natural clients of Speech Commands are its speakers

    def _scan(self) -> list[str]:
        words = set(self.labels)
        found = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if folder.name.startswith(("_", ".")):
                continue  # _background_noise_ and hidden folders
            if folder.name not in words:
                raise UserError(
                    f"Speech Commands root {self.root} has folder '{folder.name}', not one of the 35 v2 words; "
                    "point data.root at the unpacked speech_commands_v0.02 folder"
                )
            found.extend(f"{folder.name}/{wav.name}" for wav in sorted(folder.glob("*.wav")))
        if not found:
            raise UserError(
                f"Speech Commands root {self.root} has no <word>/*.wav files; "
                f"point data.root at the folder that holds {HOLDS}"
            )
        return found

    def load(self, index: int) -> np.ndarray:
        return read_wav(self.root / self.files[index])


def speaker_of(relative_path: str) -> str:
    """``"yes/0a7c2a8d_nohash_0.wav"`` -> ``"0a7c2a8d"``."""
    name = relative_path.rsplit("/", 1)[-1]
    return name.split("_nohash_", 1)[0] if "_nohash_" in name else name.rsplit(".", 1)[0]


def _read_list(path) -> set[str]:
    return {line.strip().replace("\\", "/") for line in path.read_text().splitlines() if line.strip()}
