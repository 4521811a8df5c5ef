"""The alerting rules of docs/operations.md (issue 27): Prometheus's own format, checked by Prometheus's own tool
(``promtool check rules`` and ``promtool test rules``, from Debian's ``prometheus`` package) where it is installed,
parsed with PyYAML everywhere, and naming only metrics the app really exports."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install "
                                                             "prometheus; .ci/run installs it)")


def rules_text() -> str:
    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    after = page.split("<!-- alerting rules: tests/test_operations_rules.py reads the block below -->", 1)[1]
    return re.search(r"```yaml\n(.*?)```", after, re.S).group(1)


def rules() -> dict[str, dict]:
    return {r["alert"]: r for g in yaml.safe_load(rules_text())["groups"] for r in g["rules"]}


def test_the_rules_cover_what_the_issue_asks_and_each_says_what_it_means():
    found = rules()
    assert {"OutreachWorkerStopped", "OutreachSpoolNotEmpty", "OutreachCrisisAlertOverdue",
            "OutreachOutboundFailures", "OutreachHostDown", "OutreachNotScraped"} <= set(found)
    for name, rule in found.items():
        assert rule["expr"].strip() and rule["labels"]["severity"] in ("page", "ticket"), name
        assert len(rule["annotations"]["summary"]) > 20, name


def test_the_rules_name_only_metrics_the_app_exports(web_env):
    from prometheus_client.parser import text_string_to_metric_families

    from webhooks.app import create_app

    app = create_app({**web_env, "METRICS_TOKEN": "t" * 32})
    scraped = app.test_client().get("/metrics", headers={"Authorization": "Bearer " + "t" * 32}).get_data(as_text=True)
    app.extensions["outreach"]["engine"].dispose()
    exported = {s.name for f in text_string_to_metric_families(scraped) for s in f.samples}
    named = {m for r in rules().values() for m in re.findall(r"\boutreach_[a-z_]+", r["expr"])}
    assert named and named <= exported, named - exported


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path):
    path = tmp_path / "outreach-rules.yml"
    path.write_text(rules_text())
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def _alert(name: str, at: str, labels: dict | None = None) -> dict:
    rule = rules()[name]
    summary = rule["annotations"]["summary"].replace("{{ $labels.instance }}", (labels or {}).get("instance", ""))
    return {"eval_time": at, "alertname": name,
            "exp_alerts": [{"exp_labels": {**rule["labels"], **(labels or {})},
                            "exp_annotations": {"summary": summary}}]}


def _quiet(name: str, at: str) -> dict:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


@needs_promtool
def test_the_rules_fire_when_they_should_and_not_before(tmp_path):
    """promtool's own unit tests of the rules: made-up series, when each alert fires."""
    (tmp_path / "rules.yml").write_text(rules_text())
    host = {"instance": "host-a:9464"}
    tests = [
        {"interval": "1m", "input_series": [  # a worker stopped: its heartbeat ages a minute a minute
            {"series": 'outreach_worker_heartbeat_age_seconds{instance="host-a:9464"}', "values": "100+60x15"}],
         "alert_rule_test": [_quiet("OutreachWorkerStopped", "3m"), _alert("OutreachWorkerStopped", "10m")]},
        {"interval": "1m", "input_series": [  # texts spooled from minute 2 on: after 5 minutes of it, an alert
            {"series": 'outreach_spool_texts{instance="host-a:9464"}', "values": "0 0 3x12"}],
         "alert_rule_test": [_quiet("OutreachSpoolNotEmpty", "5m"), _alert("OutreachSpoolNotEmpty", "8m", host)]},
        {"interval": "1m", "input_series": [  # an alert an hour older each minute; ALERT_RESPONSE_HOURS=12
            {"series": 'outreach_crisis_alert_oldest_age_seconds{state="open",instance="a"}', "values": "0+3600x15"},
            {"series": 'outreach_alert_response_seconds{instance="a"}', "values": "43200x15"}],
         "alert_rule_test": [_quiet("OutreachCrisisAlertOverdue", "11m"), _alert("OutreachCrisisAlertOverdue", "14m")]},
        {"interval": "1m", "input_series": [  # one text in eleven fails
            {"series": 'outreach_outbound_texts{state="sent",instance="a"}', "values": "0+100x120"},
            {"series": 'outreach_outbound_texts{state="failed",instance="a"}', "values": "0+10x120"}],
         "alert_rule_test": [_alert("OutreachOutboundFailures", "90m")]},
        {"interval": "1m", "input_series": [  # one in a hundred and one: the usual
            {"series": 'outreach_outbound_texts{state="sent",instance="a"}', "values": "0+100x120"},
            {"series": 'outreach_outbound_texts{state="failed",instance="a"}', "values": "0+1x120"}],
         "alert_rule_test": [_quiet("OutreachOutboundFailures", "90m")]},
        {"interval": "1m", "input_series": [
            {"series": 'outreach_database_up{instance="host-a:9464"}', "values": "1 1 0x10"}],
         "alert_rule_test": [_quiet("OutreachDatabaseDown", "3m"), _alert("OutreachDatabaseDown", "6m", host)]},
        {"interval": "1m", "input_series": [  # host a stops answering scrapes at minute 2; host b goes on
            {"series": 'up{job="outreach",instance="host-a:9464"}', "values": "1 1 0x10"},
            {"series": 'up{job="outreach",instance="host-b:9464"}', "values": "1x12"}],
         "alert_rule_test": [_quiet("OutreachHostDown", "3m"),
                             _alert("OutreachHostDown", "6m", {"job": "outreach", **host}),
                             _quiet("OutreachNotScraped", "10m")]},  # host b still answers
        {"interval": "1m", "input_series": [  # the only host and its scraper die: its series stop at minute 2
            {"series": 'up{job="outreach",instance="host-a:9464"}', "values": "1 1 1"}],
         "alert_rule_test": [_quiet("OutreachNotScraped", "3m"), _alert("OutreachNotScraped", "15m")]},
    ]
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m",
                                                         "tests": tests}))
    done = subprocess.run([PROMTOOL, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
