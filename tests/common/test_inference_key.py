"""The inference key file: read with a one-line error naming the file, written atomically and
read-only; and no other Python file of the repository (tests aside) reads or writes its format."""

from __future__ import annotations

import ast
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from geoverdict_common import inference_key
from geoverdict_common.exceptions import CommonError, InferenceKeyError
from geoverdict_common.inference_key import read_inference_key, read_keys, write_inference_key
from tests.repo import REPO_ROOT

# Not sources of the product, the deployment or the benchmarks.
SKIPPED = {".git", ".venv", ".cache", ".run", "tests", "model_store", "node_modules"}


def test_a_written_key_reads_back_in_torchserves_format_read_only(tmp_path: Path) -> None:
    path = tmp_path / "inference-key" / "key_file.json"
    write_inference_key(path, "secret-1")
    assert json.loads(path.read_text()) == {"inference": {"key": "secret-1"}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert read_inference_key(path) == "secret-1"
    write_inference_key(path, "secret-2")  # over the read-only file: a rotation
    assert read_inference_key(path) == "secret-2"
    assert os.listdir(path.parent) == ["key_file.json"]


def test_torchserves_own_key_file_gives_every_role(tmp_path: Path) -> None:
    path = tmp_path / "key_file.json"
    keys = {"inference": "i", "management": "m", "API": "a"}
    path.write_text(
        json.dumps({role: {"key": key, "expiration time": "never"} for role, key in keys.items()})
    )
    assert read_keys(path) == keys
    assert read_inference_key(path) == "i"


def test_a_crash_while_writing_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "key_file.json"
    write_inference_key(path, "old")

    def half_written(obj: object, out: os.PathLike[str] | object) -> None:
        out.write('{"inference": {"ke')  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # the process stops mid-write

    monkeypatch.setattr(inference_key.json, "dump", half_written)
    with pytest.raises(KeyboardInterrupt):
        write_inference_key(path, "new")
    monkeypatch.undo()
    assert read_inference_key(path) == "old"
    assert os.listdir(tmp_path) == ["key_file.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "No such file"),
        ("{not json", "JSONDecodeError"),
        ('["inference"]', "a JSON object was expected"),
        ('{"management": {"key": "m"}}', "'inference'"),
        ('{"inference": {"token": "t"}}', "'key'"),
    ],
)
def test_a_missing_or_malformed_file_is_one_line_naming_it(
    tmp_path: Path, content: str | None, why: str
) -> None:
    path = tmp_path / "key_file.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InferenceKeyError) as raised:
        read_inference_key(path)
    message = str(raised.value)
    assert message.startswith(f"cannot read the inference key from {path}: ")
    assert why in message and "\n" not in message
    assert isinstance(raised.value, CommonError)


def _key(node: ast.expr) -> tuple[str, ast.expr] | None:
    """`x["name"]` or `x.get("name", ...)`: ("name", x)."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value), node.value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ):
        return str(node.args[0].value), node.func.value
    return None


def _has_key(node: ast.expr | None) -> bool:
    """A dict literal or dict(...) call with a "key" entry."""
    if isinstance(node, ast.Dict):
        return any(isinstance(k, ast.Constant) and k.value == "key" for k in node.keys)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return any(keyword.arg == "key" for keyword in node.keywords)
    return False


def _names(node: ast.AST) -> Iterator[str]:
    """The identifiers and strings an expression mentions."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            yield sub.id
        elif isinstance(sub, ast.Attribute):
            yield sub.attr
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value


def format_uses(source: str) -> list[str]:
    """Where a module reads or writes the key file's format itself: `...["inference"]["key"]`
    (or `.get`), a literal `{"inference": {"key": ...}}`, or JSON loaded from a key file."""
    found = []
    for node in ast.walk(ast.parse(source)):
        outer = _key(node) if isinstance(node, ast.expr) else None
        inner = _key(outer[1]) if outer else None
        if outer and inner and (inner[0], outer[0]) == ("inference", "key"):
            found.append(f"{node.lineno}: reads [inference][key]")
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "inference" and _has_key(value):
                    found.append(f"{node.lineno}: writes {{inference: {{key}}}}")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "dict":
                for keyword in node.keywords:
                    if keyword.arg == "inference" and _has_key(keyword.value):
                        found.append(f"{node.lineno}: writes dict(inference={{key}})")
            if (
                isinstance(func, ast.Attribute)
                and func.attr in ("load", "loads")
                and isinstance(func.value, ast.Name)
                and func.value.id in ("json", "orjson")
                and any("key_file" in name for arg in node.args for name in _names(arg))
            ):
                found.append(f"{node.lineno}: loads a key file")
    return found


def _sources() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED and not d.startswith(".")]
        found += [Path(folder, f) for f in files if f.endswith(".py")]
    return found


def test_no_other_module_reads_or_writes_the_key_file_format() -> None:
    sources = _sources()
    module = Path(inference_key.__file__).resolve()
    assert REPO_ROOT / "deploy" / "geoverdict_modelserver" / "torchserve_health.py" in sources
    offenders = {
        str(path.relative_to(REPO_ROOT)): uses
        for path in sources
        if path.resolve() != module and (uses := format_uses(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    "code",
    [
        'token = json.loads(key_file.read_text())["inference"]["key"]',
        'token = str(data["inference"]["key"])',
        'token = data.get("inference", {}).get("key")',
        'out.write(json.dumps({"inference": {"key": key}}))',
        "json.dump(dict(inference=dict(key=key)), out)",
        "data = json.loads(self._key_file.read_text())",
        'with open("/home/model-server/keys/key_file.json") as f:\n    keys = json.load(f)',
    ],
)
def test_the_check_finds_each_way_of_using_the_format(code: str) -> None:
    if "open(" in code:
        # A file opened by name, then loaded: the subscripts give it away.
        code += '\ntoken = keys["inference"]["key"]'
    assert format_uses(code) != []


def test_the_check_leaves_other_json_alone() -> None:
    code = 'port = {"inference": 8080, "metrics": 8082}["inference"]\nkey = entry["key"]'
    assert format_uses(code) == []
