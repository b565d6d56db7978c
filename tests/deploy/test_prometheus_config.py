"""Prometheus configuration and alert rules pass promtool; dashboards are valid and provisioned."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.repo import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install prometheus; .ci/run does)")
    return path


def test_promtool_checks_the_config_and_rules(tmp_path: Path) -> None:
    promtool = _promtool()
    # The config names the rules where the container mounts them; point it at ours.
    config = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    local = tmp_path / "prometheus.yml"
    local.write_text(
        config.replace("/etc/prometheus/alerts.yml", str(PROMETHEUS_DIR / "alerts.yml"))
    )
    for args in (
        ["check", "config", str(local)],
        ["check", "rules", str(PROMETHEUS_DIR / "alerts.yml")],
    ):
        result = subprocess.run([promtool, *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_runbook_section() -> None:
    operations = (REPO_ROOT / "docs" / "operations.md").read_text().lower()
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"][0]["rules"]
    assert len(rules) >= 8
    for rule in rules:
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert f"## {anchor.replace('-', ' ')}" in operations, anchor


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboard_uses_only_the_provisioned_data_source(path: Path) -> None:
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uids = {ds["uid"] for ds in provisioned["datasources"]}
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids
            assert target["expr"].strip()


def test_both_dashboards_exist() -> None:
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    assert titles == {"Verdict stream", "Model server"}
