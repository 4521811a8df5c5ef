"""The ``outreach`` command line: the coordinators' and researchers' entry point."""
from __future__ import annotations

import datetime as dt
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


class OutreachGroup(click.Group):
    """Turns a missing setting into a one-line error naming the variable (exit 2)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=OutreachGroup, help="SMS follow-up outreach for addiction-treatment outcome research.")
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


@cli.group(help="Crisis alerts: list the open ones, resolve them.")
def alerts() -> None:
    pass


@alerts.command("list", help="Show open crisis alerts: patient_id, time and message.")
@pass_ctx
def alerts_list(ctx: Context) -> None:
    from zoneinfo import ZoneInfo

    from .alerts import open_alerts

    zone = ZoneInfo(ctx.settings.default_timezone)
    with unit_of_work(ctx.sessions) as session:
        rows = open_alerts(session)
    if not rows:
        click.echo("no open alerts")
        return
    for a in rows:
        local = a.opened_at.replace(tzinfo=dt.UTC).astimezone(zone)
        click.echo(f"#{a.id}  {local:%Y-%m-%d %H:%M %Z}  patient {a.patient_id}  "
                   f"(survey {a.followup_state or '-'})\n      \"{a.message}\"")


@alerts.command("resolve", help="Close an alert with a note (audited); a paused survey may resume.")
@click.argument("alert_id", type=int)
@click.option("--note", required=True, help="What was done.")
@pass_ctx
def alerts_resolve(ctx: Context, alert_id: int, note: str) -> None:
    from .alerts import AlertError, resolve_alert
    from .db import current_actor

    try:
        with unit_of_work(ctx.sessions) as session:
            resolve_alert(session, alert_id, note, current_actor())
    except AlertError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"alert {alert_id} resolved")


@cli.group(help="Inbound messages.")
def inbox() -> None:
    pass


@inbox.command("replay", help="Process failed inbound messages again, in arrival order.")
@pass_ctx
def inbox_replay(ctx: Context) -> None:
    from .inbound import Inbox

    results = Inbox(ctx.sessions, ctx.settings).replay_failed()
    for message_id, status in results:
        click.echo(f"message {message_id}: {status}")
    click.echo(f"replayed {len(results)} message(s), {sum(s == 'processed' for _, s in results)} processed")


@cli.command("chat", help="Play a patient's side of the conversation against the real, signed webhook.")
@click.argument("patient_id")
@click.option("--url", help="Base URL of a running server (default: the app in this process).")
@click.option("--timepoint", type=int, help="Create an invited follow-up at this time point if none is open.")
@pass_ctx
def chat(ctx: Context, patient_id: str, url: str | None, timepoint: int | None) -> None:
    from .chat import run_chat

    sys.exit(run_chat(ctx.settings, ctx.sessions, patient_id, url=url, timepoint=timepoint))


def main() -> None:
    cli(prog_name="outreach")


if __name__ == "__main__":  # pragma: no cover
    main()
