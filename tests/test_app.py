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


def test_healthz_ok_when_database_answers(db_url, make_app):
    client = make_app({"DATABASE_URL": db_url}).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_503_when_database_does_not_answer(tmp_path, make_app):
    url = f"sqlite:///{tmp_path}/missing-dir/x.db"
    response = make_app({"DATABASE_URL": url}).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_cli_help_lists_every_command(run_cli):
    out = run_cli("--help").output
    for name in ["db", "demo", "import-discharges"]:
        assert name in out
