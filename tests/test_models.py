"""The model registry: parameter counts of the paper's models, forward shapes, ImageNet init."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from gptfl_hpc.errors import UserError
from gptfl_hpc.models.registry import build_model, count_parameters
from gptfl_hpc.models.config import ModelConfig, build_from_config


@pytest.mark.parametrize(
    "name, num_classes, options, expected",
    [
        ("convnet", 10, {}, 320_010),
        ("audio_crnn", 36, {}, 285_028),
        ("audio_crnn", 50, {}, 286_834),
        ("vgg19", 10, {}, 20_029_514),
        ("resnet18", 10, {"cifar_stem": True}, 11_173_962),
        ("resnet18", 10, {"cifar_stem": False}, 11_181_642),
        ("resnet50", 100, {"cifar_stem": True}, 23_705_252),
    ],
)
def test_parameter_counts(name, num_classes, options, expected):
    assert count_parameters(build_model(name, num_classes, **options)) == expected


def test_convnet_is_the_distillation_convnet():
    model = build_model("convnet", 10)
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 3 and all(m.num_groups == m.num_channels == 128 and m.affine for m in norms)
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.modules()) == 3
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_image_models_take_32x32_batches():
    x = torch.randn(2, 3, 32, 32)
    for name in ("vgg19", "resnet18"):
        assert build_model(name, 7).eval()(x).shape == (2, 7)


def test_audio_model_on_log_mel_with_and_without_lengths():
    torch.manual_seed(0)
    model = build_model("audio_crnn", 35).eval()
    features = torch.randn(2, 101, 128)
    assert model(features).shape == (2, 35)
    # Padding beyond the true length must not change the prediction once lengths are given.
    short = features[:1, :40]
    padded = torch.cat([short, torch.zeros(1, 61, 128)], dim=1)
    with torch.no_grad():
        alone = model(short, torch.tensor([40]))
        in_batch = model(padded, torch.tensor([40]))
    assert torch.allclose(alone, in_batch, atol=1e-5)


def test_unknown_model_lists_valid_names():
    with pytest.raises(UserError) as exc_info:
        build_model("resnet152", 10)
    assert "convnet" in str(exc_info.value) and "audio_crnn" in str(exc_info.value)
    with pytest.raises(UserError, match="options"):
        build_model("vgg19", 10, cifar_stem=True)


def test_imagenet_weights_skip_mismatched_shapes(tmp_path, caplog):
    source = build_model("resnet18", 1000, cifar_stem=False)
    path = tmp_path / "resnet18.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    with caplog.at_level(logging.INFO, logger="gptfl_hpc.models.pretrained"):
        model = build_model("resnet18", 10, cifar_stem=True, imagenet_weights=path)
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert not torch.equal(model.fc.bias[:10], source.fc.bias[:10])
    skipped = [r.getMessage() for r in caplog.records if "skip" in r.getMessage()]
    assert any("conv1.weight" in m for m in skipped) and any("fc.weight" in m for m in skipped)


def test_imagenet_weights_from_safetensors(tmp_path):
    from safetensors.torch import save_file

    source = build_model("convnet", 100)
    path = tmp_path / "convnet.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = build_model("convnet", 10, imagenet_weights=path)
    assert torch.equal(model.features[0].weight, source.features[0].weight)
    assert not torch.equal(model.classifier.bias, source.classifier.bias[:10])


def test_missing_or_unreadable_weights_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_model("convnet", 10, imagenet_weights=tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable state dict"):
        build_model("convnet", 10, imagenet_weights=tmp_path / "bad.pt")


def test_model_config_defaults_and_num_classes_check():
    config = ModelConfig()
    assert config.name == "convnet" and config.num_classes is None
    assert count_parameters(build_from_config(config, 10)) == 320_010
    assert build_from_config(ModelConfig(name="audio_crnn"), 36) is not None
    with pytest.raises(UserError, match="num_classes"):
        build_from_config(ModelConfig(num_classes=5), 10)
