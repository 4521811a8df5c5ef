"""Migrations and models agree, and the upgrade is idempotent, on both databases."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from outreach.db import make_engine, upgrade
from outreach.models import Base


def test_upgrade_is_idempotent_and_matches_models(empty_db_url):
    engine = make_engine(empty_db_url)
    upgrade(engine)
    upgrade(engine)  # second run is a no-op
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert {"patients", "alliance_ratings", "followups", "messages", "answers", "waves", "alerts",
            "audit_events"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_db_upgrade_command(empty_db_url):
    from click.testing import CliRunner

    from outreach.cli import cli

    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"DATABASE_URL": empty_db_url})
    assert result.exit_code == 0
    assert "latest schema" in result.output
    engine = make_engine(empty_db_url)
    assert "patients" in inspect(engine).get_table_names()
    engine.dispose()
