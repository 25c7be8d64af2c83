"""Bad input, one row each: the command, a fragment of its one-line message, exit 2, nothing written.

Every row runs ``gptfl`` in this process (``cli.main``) from a fresh working folder holding only
what the row sets up; the quickstart config's relative ``run_dir`` (``runs/quickstart``) lands
there too. Afterwards the folder, run_dir included, must be byte-identical: a refused command
neither creates the run_dir nor touches one that exists. Rows that need root's file permissions
dropped run as a subprocess under ``capsh``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

from gptfl_hpc.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "tests" / "configs" / "tiny-quickstart.yaml"
PAPER = REPO / "configs" / "paper" / "cifar10-convnet-dir0.1.yaml"  # data root and weights still /path/to/...
RUN = Path("runs/quickstart")  # the quickstart's run_dir, relative to the working folder
CORES = len(os.sched_getaffinity(0))

# --------------------------------------------------------------------------- what is on disk first


def config_file(text: str) -> Callable[[Path], None]:
    """``c.yaml`` holding ``text`` (a small complete config unless the row is about what it lacks)."""
    return lambda folder: (folder / "c.yaml").write_text(text)


GOOD = "labels: {names: [a, b]}\n"


def file_at(relative: str, text: str = "") -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)

    return make


def made_run(folder: Path) -> None:
    """The quickstart's run_dir as the first stage leaves it: config.yaml and its hash."""
    from gptfl_hpc.config import load_config
    from gptfl_hpc.rundir import prepare_run_dir

    prepare_run_dir(load_config(QUICKSTART, [f"run_dir={folder / RUN}"]))


def digit_shards(folder: Path) -> None:
    from fixtures_shards import write_digit_shards

    write_digit_shards(folder / RUN / "synth", shards=1, limit=64)


def scored_digit_shards(folder: Path) -> None:
    """The digit shards with a score per sample: sample i scores i / 1000, so digit zero's best is below 0.07."""
    from fixtures_shards import add_scores, write_digit_shards

    add_scores(write_digit_shards(folder / RUN / "synth", shards=1, limit=64), np.arange(64) / 1000)


def audio_shards(folder: Path) -> None:
    from fixtures_shards import write_audio_shard

    write_audio_shard(folder / RUN / "synth")


def pipeline(*components: str) -> Callable[[Path], None]:
    """A Stable Diffusion folder ``w/`` whose model_index.json names a UNet, a VAE and a scheduler,
    with only ``components`` saved (each as ``NAME/<its config file>``)."""
    configs = {"unet": "config.json", "vae": "config.json", "scheduler": "scheduler_config.json"}

    def make(folder: Path) -> None:
        weights = folder / "w"
        weights.mkdir()
        document = {
            "_class_name": "StableDiffusionPipeline",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
            "safety_checker": [None, None],  # saved without: needs no folder
        }
        (weights / "model_index.json").write_text(json.dumps(document))
        for name in components:
            (weights / name).mkdir()
            (weights / name / configs[name]).write_text("{}")

    return make


def saved_pipeline(class_name: str, components: dict[str, dict], **unsaved: list) -> Callable[[Path], None]:
    """A folder ``w/`` whose model_index.json names ``class_name`` and ``components`` (each saved as
    ``NAME/config.json`` with the given content) plus ``unsaved`` entries without a folder."""

    def make(folder: Path) -> None:
        weights = folder / "w"
        weights.mkdir()
        document = {"_class_name": class_name, **unsaved}
        for name, config in components.items():
            document[name] = ["diffusers", "Component"]
            (weights / name).mkdir()
            (weights / name / "config.json").write_text(json.dumps(config))
        (weights / "model_index.json").write_text(json.dumps(document))

    return make


def model_dir(architecture: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / "w").mkdir()
        (folder / "w" / "config.json").write_text(json.dumps({"architectures": [architecture]}))

    return make


def key_pair(folder: Path) -> None:
    assert main(["labels", "keygen", "--client-id", "1", "--out", str(folder / "keys")]) == 0


def label_params(folder: Path) -> None:
    assert main(["labels", "params", "--expected-labels", "5", "--seed", "s", "--out", str(folder / "p.json")]) == 0


def image_classes(*classes: str, root: str = "d", per_class: int = 3) -> Callable[[Path], None]:
    """``root/<class>/NN.png``: tiny PNGs in class folders (a class named ``split/label`` makes split folders)."""

    def make(folder: Path) -> None:
        from fixtures_folders import write_image

        for k, name in enumerate(classes):
            (folder / root / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                write_image(folder / root / name / f"{i:02d}.png", (40 * k, 10 * i, 90), "RGB")

    return make


def file_bytes(relative: str, data: bytes) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)

    return make


def truncated_png(relative: str) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        whole = (folder / "d" / "cat" / "00.png").read_bytes()
        (folder / relative).write_bytes(whole[: len(whole) // 2])

    return make


def saved_hf(folder: Path) -> None:
    from fixtures_folders import saved_hf_images

    saved_hf_images(folder / "hf", ["cat", "dog"], ["w1", "w2"])


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        for setup in setups:
            setup(folder)

    return make


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    command: str  # after ``gptfl``; {q}: the quickstart config, {paper}: a paper config, {tmp}: the working folder
    fragment: str  # part of the one line on stderr
    setup: Optional[Callable[[Path], None]] = None


#: ``gptfl run`` of the quickstart on a folder dataset of the classes cat and dog.
FOLDER = "run {q} data.dataset=folder 'labels.names=[cat, dog]' "
#: The same federation alone, from scratch: its checks only.
FOLDER_FEDERATE = "federate {q} data.dataset=folder 'labels.names=[cat, dog]' federate.init=scratch "

ROWS = {
    # The command line itself.
    "no command": Row("", "the following arguments are required: COMMAND"),
    "unknown command": Row("frobnicate", "invalid choice: 'frobnicate'"),
    "bad executor": Row("run {q} --executor foo",
                        "invalid choice: 'foo' (choose from 'inline', 'local', 'slurm', 'debug')"),
    "no config": Row("run", "the following arguments are required: config; see `gptfl run --help`"),
    "unknown option": Row("prompts {q} --fast", "unrecognized arguments: --fast"),
    # Overrides.
    "override without =": Row("validate {q} seed", "override 'seed' is not key=value"),
    "override without key": Row("validate {q} =3", "override '=3' is not key=value"),
    "override empty part": Row("validate {q} synth..count=3", "is not key=value"),
    "override through a value": Row("validate {q} seed.deeper=1",
                                    "override 'seed.deeper=1': 'seed' is a value, not a section"),
    "override repeats a key": Row("validate {q} 'launcher.stages={{synth: {{nodes: 1, nodes: 2}}}}'",
                                  "gives key 'nodes' twice"),
    "override of a broken list": Row("validate {q} 'labels.names=[a'",
                                     "key 'labels.names': input should be a valid list"),
    # The config file.
    "config missing": Row("validate {tmp}/absent.yaml", "config file {tmp}/absent.yaml not found"),
    "config not YAML": Row("prompts {tmp}/c.yaml", "is not valid YAML at line 2", config_file("seed: [1\nlabels: x\n")),
    "config a list": Row("prompts {tmp}/c.yaml", "must hold a mapping of keys, not list", config_file("- a\n")),
    "config without labels": Row("run {tmp}/c.yaml", "missing key 'labels'", config_file("seed: 1\n")),
    "config key twice": Row("run {tmp}/c.yaml", "gives key 'seed' twice (lines 2 and 3); keep one",
                            config_file(GOOD + "seed: 1\nseed: 2\n")),
    "config nested key twice": Row("validate {tmp}/c.yaml", "gives key 'rounds' twice (lines 3 and 4)",
                                   config_file(GOOD + "federate:\n  rounds: 3\n  rounds: 4\n")),
    "file error not blamed on --executor": Row("run {tmp}/c.yaml --executor inline",
                                               "config file {tmp}/c.yaml: 'launcher' is a section but holds 'local'",
                                               config_file(GOOD + "launcher: local\n")),
    "empty section not blamed on override": Row("prompts {tmp}/c.yaml synth.count=5",
                                                "config file {tmp}/c.yaml: 'synth' is a section but is empty",
                                                config_file(GOOD + "synth:\n")),
    "earlier override blamed": Row("validate {q} launcher=slurm launcher.executor=local",
                                   "override 'launcher=slurm': 'launcher' is a section but holds 'slurm'"),
    # Unknown keys at each level.
    "unknown top key": Row("validate {q} seeed=1", "unknown key 'seeed'; did you mean 'seed'?"),
    "unknown labels key": Row("validate {q} labels.nmes=[a]", "did you mean 'labels.names'?"),
    "unknown launcher key": Row("validate {q} launcher.zzz=1", "valid keys here: executor, poll_interval_s"),
    "unknown slurm key": Row("validate {q} launcher.slurm.partiton=gpu", "did you mean 'launcher.slurm.partition'?"),
    "unknown tracking key": Row("validate {q} tracking.wandb.mod=online", "did you mean 'tracking.wandb.mode'?"),
    "unknown tracking backend": Row("validate {q} tracking.backends=[tensorbord]",
                                    "'tensorbord' is not a tracking backend; did you mean 'tensorboard'?"),
    "bad wandb mode": Row("validate {q} tracking.wandb.mode=cloud", "tracking.wandb.mode"),
    "unknown stage": Row("validate {q} 'launcher.stages={{synt: {{nodes: 2}}}}'",
                         "launcher.stages.synt is not a stage; did you mean 'synth'?"),
    "unknown stage slurm key": Row("validate {q} 'launcher.stages={{synth: {{gpus: 1}}}}'",
                                   "launcher.stages.synth.gpus: is not a Slurm setting; did you mean 'gpus_per_node'?"),
    "unknown data key": Row("validate {q} data.datset=cifar10", "did you mean 'data.dataset'?"),
    "unknown partition key": Row("validate {q} data.partition.alhpa=0.1", "did you mean 'data.partition.alpha'?"),
    "unknown audio key": Row("validate {q} data.audio.n_mel=64", "did you mean 'data.audio.n_mels'?"),
    "unknown model key": Row("validate {q} model.widht=8", "did you mean 'model.width'?"),
    "unknown prompts key": Row("validate {q} prompts.per_clas=3", "did you mean 'prompts.per_class'?"),
    "unknown llm key": Row("validate {q} 'prompts.llm={{path: tiny, kindd: causal}}'",
                           "did you mean 'prompts.llm.kind'?"),
    "unknown synth key": Row("validate {q} synth.multiplyer=2", "did you mean 'synth.multiplier'?"),
    "unknown generator key": Row("validate {q} synth.model.stpes=4", "did you mean 'synth.model.steps'?"),
    "unknown pretrain key": Row("pretrain {q} pretrain.epoch=2", "did you mean 'pretrain.epochs'?"),
    "unknown federate key": Row("federate {q} federate.round=3", "did you mean 'federate.rounds'?"),
    "unknown client key": Row("federate {q} federate.client.lrr=0.1", "did you mean 'federate.client.lr'?"),
    # Wrong types: a boolean is never taken as a number.
    "seed true": Row("run {q} seed=true", "key 'seed': true is a boolean, not a number"),
    "rounds true": Row("federate {q} federate.rounds=true", "key 'federate.rounds': true is a boolean"),
    "ranks false": Row("pretrain {q} pretrain.ranks=false", "key 'pretrain.ranks': false is a boolean"),
    "clients yes": Row("validate {q} data.partition.num_clients=yes",
                       "key 'data.partition.num_clients': true is a boolean"),
    "lr true": Row("federate {q} federate.client.lr=true", "key 'federate.client.lr': true is a boolean"),
    "guidance true": Row("synth {q} 'synth.guidance=[true, 5]'", "key 'synth.guidance[0]': true is a boolean"),
    "stage nodes true": Row("validate {q} 'launcher.stages={{pretrain: {{nodes: true}}}}'",
                            "launcher.stages.pretrain.nodes: true is a boolean"),
    "seed text": Row("validate {q} seed=abc", "key 'seed': input should be a valid integer"),
    "rounds fraction": Row("federate {q} federate.rounds=2.5",
                           "key 'federate.rounds': input should be a valid integer"),
    "batch a list": Row("synth {q} synth.model.batch_size=[1]", "key 'synth.model.batch_size'"),
    "names not a list": Row("validate {q} labels.names=cat", "key 'labels.names': input should be a valid list"),
    "executor unknown": Row("validate {q} launcher.executor=auto",
                            "input should be 'inline', 'local', 'slurm' or 'debug'"),
    "model unknown": Row("validate {q} model.name=resnet", "key 'model.name': input should be 'convnet'"),
    "dataset unknown": Row("validate {q} data.dataset=mnist", "key 'data.dataset': 'mnist' is not a dataset; use one of cifar10, cifar100, digits"),
    "generator unknown": Row("validate {q} synth.model.kind=dalle", "key 'synth.model.kind'"),
    "slurm time": Row("validate {q} launcher.slurm.time=1:2:3:4", "is not a Slurm time"),
    "slurm mem": Row("validate {q} launcher.slurm.mem=lots", "is not a Slurm memory size"),
    "stage slurm mem": Row("validate {q} 'launcher.stages={{pretrain: {{mem: lots}}}}'",
                           "launcher.stages.pretrain.mem: 'lots' is not a Slurm memory size"),
    # run_dir.
    "run_dir empty": Row("run {q} run_dir=", "run_dir is empty; set it to the run's folder"),
    "run_dir blank": Row("prompts {q} 'run_dir= '", "run_dir is empty"),
    "run_dir null": Row("prompts {q} run_dir=null", "run_dir is empty"),
    "run_dir is a file": Row("prompts {q} --executor inline",
                             "runs/quickstart is a file, not a folder", file_at("runs/quickstart")),
    "run_dir is a file, run": Row("run {q}", "is a file, not a folder", file_at("runs/quickstart")),
    "run_dir under a file": Row("synth {q} run_dir=afile/run",
                                "cannot be made: {tmp}/afile is a file", file_at("afile")),
    "run_dir of another config": Row("prompts {q} seed=5", "was made by a different config (changed: seed)", made_run),
    "run_dir of another config, run": Row("run {q} federate.rounds=3", "changed: federate.rounds", made_run),
    # Ranges.
    "seed negative": Row("validate {q} seed=-1", "key 'seed': input should be greater than or equal to 0"),
    "rounds zero": Row("federate {q} federate.rounds=0",
                       "key 'federate.rounds': input should be greater than or equal to 1"),
    "epochs zero": Row("pretrain {q} pretrain.epochs=0", "key 'pretrain.epochs'"),
    "image size": Row("validate {q} data.image_size=4", "key 'data.image_size'"),
    "test fraction": Row("validate {q} data.test_fraction=1.5",
                         "key 'data.test_fraction': input should be less than 1"),
    "alpha zero": Row("validate {q} data.partition.alpha=0",
                      "key 'data.partition.alpha': input should be greater than 0"),
    "dropout one": Row("validate {q} model.dropout=1", "key 'model.dropout'"),
    "guidance inverted": Row("synth {q} 'synth.guidance=[5, 1]'", "synth.guidance [5.0, 1.0] is inverted"),
    "count zero": Row("synth {q} synth.count=0", "synth.count 0 must be at least 1"),
    "poll zero": Row("validate {q} launcher.poll_interval_s=0", "key 'launcher.poll_interval_s'"),
    "zero stage": Row("pretrain {q} pretrain.zero_stage=5", "pretrain.zero_stage 5 is not a ZeRO stage"),
    "speaker partition": Row("validate {q} data.partition.kind=speaker",
                             "data.partition.kind speaker needs dataset speech_commands"),
    # Labels.
    "labels empty": Row("validate {q} labels.names=[]", "labels.names is empty"),
    "labels repeated": Row("prompts {q} 'labels.names=[a, b, a]'", "labels.names repeats ['a']"),
    "labels file unset": Row("validate {q} labels.source=file", "labels.source 'file' needs labels.path"),
    "labels file missing": Row("prompts {q} labels.source=file labels.path={tmp}/nope.txt",
                               "labels.path {tmp}/nope.txt does not exist"),
    "labels file empty": Row("prompts {q} labels.source=file labels.path={tmp}/l.txt",
                             "lists no labels", file_at("l.txt", "\n\n")),
    "labels file repeats": Row("run {q} labels.source=file labels.path={tmp}/l.txt",
                               "repeats ['cat']", file_at("l.txt", "cat\ncat\n")),
    "labels union not JSON": Row("prompts {q} labels.source=iblt labels.path={tmp}/u.json",
                                 "is not readable JSON", file_at("u.json", "{")),
    "labels not in dataset, federate": Row("federate {q} 'labels.names=[cat, dog]' federate.init=scratch --dry-run",
                                           "'cat'"),
    "labels not in dataset, run": Row("run {q} 'labels.names=[digit zero, cat]' federate.init=scratch", "'cat'"),
    "labels not in shards": Row("pretrain {q} 'labels.names=[digit zero, cat]'", "'cat'", digit_shards),
    # Data roots.
    "root unset": Row("federate {q} data.dataset=cifar10 federate.init=scratch --dry-run",
                      "data.root"),
    "root missing, federate": Row("federate {q} data.dataset=cifar10 data.root={tmp}/nope federate.init=scratch "
                                  "--dry-run",
                                  "{tmp}/nope"),
    "root missing, run": Row("run {q} data.dataset=cifar10 data.root={tmp}/nope", "{tmp}/nope"),
    "root empty": Row("federate {q} data.dataset=cifar100 data.root={tmp}/empty federate.init=scratch --dry-run",
                      "{tmp}/empty", lambda folder: (folder / "empty").mkdir()),
    "root empty, run": Row("run {q} data.dataset=cifar100 data.root={tmp}/empty",
                           "{tmp}/empty has no cifar-100-python/train",
                           lambda folder: (folder / "empty").mkdir()),
    # Modalities that do not fit together.
    "speech generator, image data": Row("synth {q} synth.model.kind=speecht5",
                                        "synth.model.kind speecht5 is for audio but data.dataset digits is for images"),
    "speech generator, image data, run": Row("run {q} synth.model.kind=speecht5",
                                             "set synth.model.kind to stable_diffusion"),
    "sound generator, image model": Row("run {q} synth.model.kind=audioldm synth.count=20",
                                        "synth.model.kind audioldm is for audio but model.name convnet is for images"),
    "audio model, image data": Row("federate {q} model.name=audio_crnn federate.init=scratch",
                                   "model.name audio_crnn is for audio but data.dataset digits is for images"),
    "image generator, sound data": Row("run {q} data.dataset=esc50 data.root={tmp}",
                                       "synth.model.kind stable_diffusion is for images but data.dataset esc50"),
    "audio shards, image model": Row("pretrain {q}",
                                     "the shards hold audio but model 'convnet' takes image input", audio_shards),
    # Generator weights.
    "weights missing": Row("synth {q} synth.model.weights={tmp}/nope",
                           "synth.model.weights: {tmp}/nope does not exist"),
    "weights missing, run": Row("run {q} synth.model.weights={tmp}/nope", "{tmp}/nope does not exist"),
    "weights a file": Row("synth {q} synth.model.weights={tmp}/w", "is a file, not a model directory", file_at("w")),
    "weights without index": Row("synth {q} synth.model.weights={tmp}/w", "holds no model_index.json or config.json",
                                 lambda folder: (folder / "w").mkdir()),
    "weights of another model": Row("synth {q} synth.model.weights={tmp}/w",
                                    "holds a BertModel, but synth.model.kind needs",
                                    model_dir("BertModel")),
    "weights index not JSON": Row("synth {q} synth.model.weights={tmp}/w",
                                  "is not readable JSON", file_at("w/model_index.json", "{")),
    "weights lack a component": Row("synth {q} synth.model.weights={tmp}/w", "names the UNet2DConditionModel 'unet'",
                                    pipeline("vae", "scheduler")),
    "weights component lacks config": Row("run {q} synth.model.weights={tmp}/w",
                                          "{tmp}/w/scheduler holds no config file",
                                          both(pipeline("unet", "vae"), file_at("w/scheduler/weights.bin"))),
    "weights of an unsupported pipeline": Row("synth {q} synth.model.weights={tmp}/w",
                                              "holds a KandinskyPipeline, but synth.model.kind needs one of the "
                                              "supported classes: StableDiffusionPipeline, StableDiffusionXLPipeline",
                                              saved_pipeline("KandinskyPipeline", {"unet": {}})),
    "flux weights lack a component": Row("synth {q} synth.model.weights={tmp}/w synth.guidance=null",
                                         "names the AutoencoderKL 'vae'",
                                         saved_pipeline("FluxPipeline", {"transformer": {}}, vae=["diffusers", "AutoencoderKL"])),
    "guidance for a distilled model": Row("synth {q} synth.model.weights={tmp}/w",
                                          "are guidance-distilled without embedded guidance (e.g. FLUX.1 schnell); "
                                          "set synth.guidance: null",
                                          saved_pipeline("FluxPipeline", {"transformer": {"guidance_embeds": False}})),
    "sd3 without its t5 encoder": Row("synth {q} synth.model.weights={tmp}/w",
                                      "was saved without its T5 text encoder (text_encoder_3), but "
                                      "synth.model.text_encoder_3 is true",
                                      saved_pipeline("StableDiffusion3Pipeline", {"transformer": {}},
                                                     text_encoder_3=[None, None], tokenizer_3=[None, None])),
    "score model of images for speech": Row("synth {q} synth.model.kind=speecht5 synth.count=10 "
                                            "synth.score.kind=clip synth.score.model={tmp}/w",
                                            "synth.score.kind clip scores image samples, but the generator makes "
                                            "speech; use kind clap", model_dir("CLIPModel")),
    "score model of audio for images": Row("synth {q} synth.score.kind=clip synth.score.model={tmp}/w",
                                           "holds a ClapModel, which scores speech/audio samples, but "
                                           "synth.score.kind clip needs a CLIPModel", model_dir("ClapModel")),
    "score kind of audio for images": Row("run {q} synth.score.kind=clap synth.score.model={tmp}/w",
                                          "synth.score.kind clap scores speech/audio samples, but the generator makes "
                                          "image; use kind clip", model_dir("ClapModel")),
    "score model missing": Row("synth {q} synth.score.model={tmp}/nope",
                               "synth.score.model: {tmp}/nope is not a directory"),
    "score model unset": Row("validate {q} synth.score.kind=clip", "synth.score.model is not set"),
    "keep_fraction zero": Row("pretrain {q} pretrain.keep_fraction=0", "key 'pretrain.keep_fraction'"),
    "keep_fraction above one": Row("pretrain {q} pretrain.keep_fraction=1.5", "key 'pretrain.keep_fraction'"),
    "min_score and keep_fraction": Row("pretrain {q} pretrain.keep_fraction=0.5 pretrain.min_score=0.1",
                                       "are both set; keep samples by one rule"),
    "keep_fraction without scores": Row("pretrain {q} pretrain.keep_fraction=0.5",
                                        "pretrain.keep_fraction needs a score per sample, but shard", digit_shards),
    "min_score without synth.score": Row("run {q} pretrain.min_score=0.2",
                                         "synth.score is not set, so the run's shards will hold none"),
    "min_score empties a class": Row("pretrain {q} pretrain.min_score=0.06",
                                     "leaves class 'digit three' empty: its best score is 0.0570", scored_digit_shards),
    "speech weights without vocoder": Row("synth {q} synth.model.kind=speecht5 synth.count=10 "
                                          "synth.model.weights={tmp}/w",
                                          "synth.model.vocoder is not set", model_dir("SpeechT5ForTextToSpeech")),
    "vocoder missing": Row("synth {q} synth.model.kind=speecht5 synth.count=10 synth.model.weights={tmp}/w "
                           "synth.model.vocoder={tmp}/nope", "synth.model.vocoder: {tmp}/nope does not exist",
                           model_dir("SpeechT5ForTextToSpeech")),
    "llm missing": Row("prompts {q} 'prompts.llm={{path: {tmp}/nope}}'", "{tmp}/nope does not exist"),
    "too many prompts": Row("prompts {q} prompts.per_class=500", "lower prompts.per_class"),
    # Stage inputs, checked before anything is written.
    "clients per round, federate": Row("federate {q} federate.clients_per_round=20 federate.init=scratch",
                                       "federate.clients_per_round 20 exceeds the 10 clients"),
    "clients per round, run": Row("run {q} federate.clients_per_round=20", "federate.clients_per_round 20 exceeds"),
    "pretrain ranks, run": Row(f"run {{q}} pretrain.ranks={CORES + 1}", f"{CORES + 1} ranks"),
    "federate ranks": Row(f"federate {{q}} federate.ranks={CORES + 1} federate.init=scratch", f"{CORES + 1} ranks"),
    "client eval fraction one": Row("federate {q} federate.client_eval.fraction=1 federate.init=scratch",
                                    "key 'federate.client_eval.fraction': input should be less than 1"),
    "client eval every zero": Row("federate {q} federate.client_eval.every=0 federate.init=scratch",
                                  "key 'federate.client_eval.every': input should be greater than or equal to 1"),
    "client eval empty holdout": Row("federate {q} federate.client_eval.fraction=0.001 federate.init=scratch",
                                     "holds out no sample of client 8, which has 65; raise the fraction to at least"),
    "client eval nothing to train": Row("run {q} federate.client_eval.fraction=0.999",
                                        "holds out all 65 samples of client 8, leaving it nothing to train on"),
    "no shards": Row("pretrain {q}", "run `gptfl synth` first"),
    "no pretrained model": Row("federate {q}", "federate.init is pretrain but"),
    "init model missing": Row("run {q} federate.init_path={tmp}/nope.safetensors", "{tmp}/nope.safetensors"),
    "batch too large": Row("pretrain {q} pretrain.micro_batch_size=512",
                           "do not fill one optimizer step", digit_shards),
    "shards missing": Row("pretrain {q} pretrain.shards=[{tmp}/nope]", "shard source {tmp}/nope does not exist"),
    # status, report, synth verify.
    "status without run": Row("status", "the following arguments are required: run_dir"),
    "status of nothing": Row("status {tmp}/nope", "{tmp}/nope is not a run directory"),
    "status of a file": Row("status {tmp}/c.yaml", "is not a run directory", config_file(GOOD)),
    "report of nothing": Row("report {tmp}/nope", "{tmp}/nope is not a run directory"),
    "report smooth zero": Row("report runs/quickstart --smooth 0",
                              "--smooth takes a number of rounds (1 or more)", made_run),
    "report smooth text": Row("report runs/quickstart --smooth x", "got 'x'", made_run),
    "verify without run": Row("synth verify", "usage: gptfl synth verify RUN_DIR"),
    "verify two runs": Row("synth verify a b", "usage: gptfl synth verify RUN_DIR"),
    "verify of nothing": Row("synth verify {tmp}/nope", "{tmp}/nope is not a run directory"),
    "verify before synth": Row("synth verify runs/quickstart", "plan.json not found; run `gptfl synth`", made_run),
    # gptfl labels.
    "labels without step": Row("labels", "the following arguments are required: STEP"),
    "labels unknown step": Row("labels decode", "invalid choice: 'decode'"),
    "keygen bad id": Row("labels keygen --client-id abc --out {tmp}/keys", "client id must be a non-negative integer"),
    "keygen twice": Row("labels keygen --client-id 1 --out {tmp}/keys", "already exists", key_pair),
    "params zero labels": Row("labels params --expected-labels 0 --out {tmp}/p.json",
                              "--expected-labels must be at least 1"),
    "params bad failure": Row("labels params --expected-labels 5 --failure-prob 2 --out {tmp}/p.json",
                              "--failure-prob must lie strictly between 0 and 1"),
    "encode two sources": Row("labels encode --client-id 1 --labels a --labels-file {tmp}/l.txt --private-key k "
                              "--public-keys {tmp} --params p --out o", "not allowed with argument"),
    "encode without params": Row("labels encode --client-id 1 --labels a --private-key {tmp}/keys/1.key "
                                 "--public-keys {tmp}/keys --params {tmp}/p.json --out {tmp}/m.npz",
                                 "params file {tmp}/p.json does not exist", key_pair),
    "encode with one key": Row("labels encode --client-id 1 --labels a --private-key {tmp}/keys/1.key "
                               "--public-keys {tmp}/keys --params {tmp}/p.json --out {tmp}/m.npz",
                               "holds only client 1's key; masking needs at least two clients",
                               both(key_pair, label_params)),
    "aggregate missing table": Row("labels aggregate {tmp}/m.npz --params {tmp}/p.json --out {tmp}/u.json",
                                   "masked table {tmp}/m.npz does not exist", label_params),
    "reveal without keys": Row("labels reveal --client-id 1", "the following arguments are required: --private-key"),
    # Other commands.
    "partition too many clients": Row("partition {q} data.partition.num_clients=5000",
                                      "data.partition.num_clients 5000 must be between 1 and the"),
    # Folders and saved datasets users bring (FOLDER: a tiny image folder run on the labels cat, dog).
    "folder root missing": Row(FOLDER + "data.root={tmp}/nope", "the folder dataset root {tmp}/nope is not a directory"),
    "folder root empty": Row(FOLDER + "data.root={tmp}/d", "{tmp}/d holds no class folders", file_at("d/.keep")),
    "folder class empty": Row(FOLDER + "data.root={tmp}/d", "class folder {tmp}/d/dog holds no image or audio files",
                              both(image_classes("cat"), file_at("d/dog/notes.txt"))),
    "folder split lacks a run label": Row(FOLDER + "data.root={tmp}/d",
                                          "the image/audio folder test split at {tmp}/d has no label 'dog'",
                                          image_classes("train/cat", "train/dog", "test/cat")),
    "folder unreadable image": Row(FOLDER + "data.root={tmp}/d", "dog/09.png cannot be decoded",
                                   both(image_classes("cat", "dog"), file_bytes("d/dog/09.png", b"not a png"))),
    "folder truncated image": Row(FOLDER + "data.root={tmp}/d", "cat/01.png cannot be decoded",
                                  both(image_classes("cat", "dog", per_class=5), truncated_png("d/cat/01.png"))),
    "folder truncated image, partition": Row("partition {q} data.dataset=folder data.root={tmp}/d "
                                             "'labels.names=[cat, dog]' data.partition.num_clients=2 "
                                             "data.partition.min_client_size=1", "cat/01.png cannot be decoded",
                                             both(image_classes("cat", "dog", per_class=5),
                                                  truncated_png("d/cat/01.png"))),
    "folder metadata names a missing file": Row(FOLDER + "data.root={tmp}/d",
                                                "metadata.csv names cat/09.png, which is not in {tmp}/d",
                                                both(image_classes("cat", "dog"),
                                                     file_at("d/metadata.csv", "file_name,label\ncat/09.png,cat\n"))),
    "folder metadata without the label column": Row(FOLDER + "data.root={tmp}/d data.columns.label=kind",
                                                    "metadata.csv has no column 'kind' (data.columns.label)",
                                                    both(image_classes("cat", "dog"),
                                                         file_at("d/metadata.csv", "file_name,label\ncat/00.png,cat\n"))),
    "natural partition without clients": Row(FOLDER_FEDERATE + "data.root={tmp}/d data.partition.kind=natural",
                                             "data.partition.kind natural needs each sample's client",
                                             image_classes("cat", "dog")),
    "hf column missing": Row("run {q} data.dataset=hf data.root={tmp}/hf 'labels.names=[cat, dog]' "
                             "data.columns.client=speaker", "data.columns.client 'speaker' is not a column", saved_hf),
    "folder mixes images and audio": Row(FOLDER + "data.root={tmp}/d", "holds both images (cat/00.png) and audio",
                                         both(image_classes("cat"), file_bytes("d/dog/00.wav", b"RIFF"))),
    "folder too small for its clients": Row(FOLDER_FEDERATE + "data.root={tmp}/d data.partition.num_clients=2 "
                                            "federate.clients_per_round=2",
                                            "data.partition.min_client_size 10 x 2 clients exceeds the",
                                            image_classes("cat", "dog")),
    "placeholder paths": Row("validate {paper}", "still a placeholder: data.root (/path/to/cifar10)"),
    "sweep axis without values": Row("sweep {q} --axis seed", "--axis 'seed' is not KEY=V1,V2,..."),
    "sweep axis repeats": Row("sweep {q} --axis seed=1,1", "axis 'seed' lists 1 more than once"),
    "sweep axis unknown key": Row("sweep {q} --axis seeed=1,2", "point seeed=1: config: unknown key 'seeed'"),
    "sweep grid missing": Row("sweep {tmp}/nope.yaml", "grid file {tmp}/nope.yaml not found"),
}


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with its kind, mode and content: what 'nothing written' compares."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
        found[str(path.relative_to(folder))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), content)
    return found


def assert_one_line(code: int, err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1 and lines[0].startswith("gptfl: error: "), err
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("row", [pytest.param(row, id=name) for name, row in ROWS.items()])
def test_bad_input_is_one_line_and_writes_nothing(row, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if row.setup is not None:
        row.setup(tmp_path)
    capsys.readouterr()
    before = snapshot(tmp_path)
    argv = [part.format(q=QUICKSTART, paper=PAPER, tmp=tmp_path) for part in shlex.split(row.command)]
    code = main(argv)
    assert_one_line(code, capsys.readouterr().err, row.fragment.format(tmp=tmp_path))
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- as a user who is not root


def unprivileged(command: list[str]) -> list[str]:
    """``command`` run without root's power to write anywhere (any other user lacks it already)."""
    if os.geteuid() != 0:
        return command
    capsh = shutil.which("capsh")
    if capsh is None:
        pytest.skip("capsh not installed (apt-get install libcap2-bin)")
    return [capsh, "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", shlex.join(command)]


@pytest.mark.parametrize(
    "run_dir, fragment",
    [("locked/run", "cannot be made: {tmp}/locked is not writable"), ("locked", "{tmp}/locked is not writable")],
    ids=["parent not writable", "run_dir not writable"],
)
def test_unwritable_run_dir_is_one_line(tmp_path, run_dir, fragment):
    """A subprocess, so that the real entry point's logging is part of the one-line promise too."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    before = snapshot(tmp_path)
    command = [sys.executable, "-m", "gptfl_hpc", "prompts", str(QUICKSTART), f"run_dir={tmp_path / run_dir}",
               "--executor", "inline"]
    proc = subprocess.run(unprivileged(command), capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert_one_line(proc.returncode, proc.stderr, fragment.format(tmp=tmp_path))
    assert snapshot(tmp_path) == before
