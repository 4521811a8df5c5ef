import pytest

from webhooks.app import create_app


@pytest.fixture
def make_app():
    apps = []

    def make(config):
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["outreach"]["engine"].dispose()


def test_healthz_ok_when_database_answers(web_env, make_app):
    client = make_app(web_env).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_503_when_database_does_not_answer(tmp_path, make_app):
    url = f"sqlite:///{tmp_path}/missing-dir/x.db"
    config = {"DATABASE_URL": url, "TWILIO_AUTH_TOKEN": "t", "HELP_CONTACT": "1"}
    response = make_app(config).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_app_refuses_to_start_without_its_secret(monkeypatch, tmp_path):
    from outreach.config import ConfigError

    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "HELP_CONTACT": "1"})


def test_cli_help_lists_every_command(run_cli):
    out = run_cli("--help").output
    import re

    commands = out.split("Commands:")[1]
    listed = dict(re.findall(r"^  (\S+)\s+(.+)$", commands, re.M))
    assert set(listed) == {"db", "demo", "import-discharges", "alerts", "inbox", "chat", "waves", "send-due",
                           "tick", "worker", "export", "report"}
    assert all(len(text) > 10 and not text.endswith("...") for text in listed.values())


def test_command_needing_a_secret_names_it(run_cli, make_patient, monkeypatch):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    make_patient(patient_id="Q1")
    result = run_cli("chat", "Q1", input="")
    assert result.exit_code == 2 and "TWILIO_AUTH_TOKEN is not set" in result.output
