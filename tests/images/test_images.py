"""The images' builder: what it builds from, and its errors (the builds themselves run with
podman: `geoverdict images build`, docs/operations.md "Images")."""

from __future__ import annotations

import re

import pytest

from geoverdict.cli import main
from geoverdict_images.images import IMAGES, STAND_INS
from tests.repo import REPO_ROOT


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_each_dockerfile_takes_its_base_as_a_build_argument(name: str) -> None:
    text = (REPO_ROOT / IMAGES[name].dockerfile).read_text()
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert default, "a stand-in can replace the base only through ARG BASE_IMAGE"
    assert IMAGES[name].stand_in.replaces in default[1]  # the stand-in stands for that base
    first_from = re.search(r"^FROM (\S+)", text, re.MULTILINE)
    assert first_from and first_from[1] == "${BASE_IMAGE}"


def test_every_stand_in_says_what_it_replaces_and_starts_from_its_root() -> None:
    readme = (REPO_ROOT / "deploy" / "stand-ins" / "README.md").read_text()
    for stand_in in STAND_INS.values():
        assert f"`{stand_in.replaces}`" in readme
        containerfile = REPO_ROOT / "deploy" / "stand-ins" / stand_in.name / "Containerfile"
        text = containerfile.read_text()
        assert "ARG ROOT=" in text and "FROM ${ROOT}" in text
        if "pip install" in text:  # fetches over TLS: trusts the machine's own CAs (a proxy's)
            assert "COPY ca/ " in text


def test_an_unknown_image_is_one_line_naming_the_images(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["images", "build", "nginx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no image nginx; the images are consumer, torchserve, triton")
