"""The ``outreach`` command line: the coordinators' and researchers' entry point."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .config import ConfigError, Settings, load_settings
from .db import make_engine, session_factory, unit_of_work, upgrade


class Context:
    def __init__(self) -> None:
        self.settings: Settings = load_settings()
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
            click.get_current_context().call_on_close(self._engine.dispose)
        return self._engine

    @property
    def sessions(self):
        return session_factory(self.engine)


pass_ctx = click.make_pass_decorator(Context, ensure=True)


@click.group(help="SMS follow-up outreach for addiction-treatment outcome research.")
def cli() -> None:
    pass


@cli.group(help="Database schema management.")
def db() -> None:
    pass


@db.command("upgrade", help="Create or migrate the database to the latest schema (safe to repeat).")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    upgrade(ctx.engine)
    click.echo("database is at the latest schema")


@cli.command("import-discharges", help="Import a discharge CSV with alliance ratings (all-or-nothing).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Write the valid rows; put invalid ones in FILE.rejected.csv.")
@pass_ctx
def import_discharges_cmd(ctx: Context, file: Path, skip_invalid: bool) -> None:
    from .importer import ImportFileError, import_discharges

    try:
        with unit_of_work(ctx.sessions) as session:
            result = import_discharges(session, file, ctx.settings, skip_invalid=skip_invalid)
    except ImportFileError as exc:
        click.echo(str(exc), err=True)
        click.echo("nothing was imported", err=True)
        sys.exit(1)
    for error in result.errors:
        click.echo(str(error), err=True)
    if not result.written:
        click.echo(f"{len(result.errors)} problem(s) in {result.rejected} row(s); nothing was imported "
                   "(fix the file, or use --skip-invalid)", err=True)
        sys.exit(1)
    click.echo(result.summary)
    if result.rejected_path:
        click.echo(f"rejected rows written to {result.rejected_path}")


@cli.command("demo", help="Run the whole cycle on a fresh SQLite database under ./demo/ (no credentials).")
@click.option("--dir", "directory", default="demo", type=click.Path(file_okay=False, path_type=Path))
@click.option("--patients", default=300, show_default=True)
@click.option("--seed", default=7, show_default=True)
def demo_cmd(directory: Path, patients: int, seed: int) -> None:
    from .demo import run_demo

    run_demo(directory, patients=patients, seed=seed, echo=click.echo)


def main() -> None:
    try:
        cli(prog_name="outreach")
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
