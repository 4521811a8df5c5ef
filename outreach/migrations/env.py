from alembic import context

from outreach.models import Base

config = context.config
target_metadata = Base.metadata


def _sqlite_foreign_keys(connection, on: bool) -> None:
    # On the DBAPI connection: SQLite ignores this PRAGMA inside a transaction, and SQLAlchemy's
    # connection would open one first.
    cursor = connection.connection.dbapi_connection.cursor()
    cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    cursor.close()


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration on SQLite copies a table, drops the old one and renames the copy; with
            # foreign keys on, dropping followups would cascade to the answers that point at it.
            _sqlite_foreign_keys(connection, False)
        try:
            with connection.begin():
                context.configure(connection=connection, target_metadata=target_metadata,
                                  render_as_batch=sqlite, compare_type=True)
                with context.begin_transaction():
                    context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration left {len(broken)} rows pointing at missing rows")
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, True)


run_migrations_online()
