"""The ``outreach`` command line: the coordinators' and researchers' entry point.

Like ``webhooks/``, this module is an entry point: it is the one place in ``outreach/`` that may
import ``webhooks`` and ``analysis``, and it hands what it builds to the services below it.

Every command runs inside one error boundary (:class:`OutreachGroup`): a known failure (a missing
setting, no schema, a database that does not answer, a server that does not answer, a file that is not
there; :func:`outreach.errors.explain`) is printed as one or two lines and a non-zero exit, anything else
as one line with a reference, its traceback logged only with ``--debug``.  Commands open the database
with :func:`outreach.db.open_database`, so none but ``db upgrade`` ever creates one.  Times are shown in
the coordinators' zone (``CONSOLE_TIMEZONE``, else ``DEFAULT_TIMEZONE``) with its abbreviation."""
from __future__ import annotations

import datetime as dt
import gc
import logging
import secrets
import sys
from pathlib import Path

import click

from .staff.accounts import ROLES
from .config import Settings, hide_password, load_settings, local_time
from .db import open_database, session_factory, unit_of_work, upgrade
from .states import AlertState, Processing

log = logging.getLogger("outreach.cli")
# Every count and id a command takes is a whole number from 1 (a limit of -1 or 0 is refused, not read as "all").
COUNT = click.IntRange(min=1)


class Context:
    def __init__(self) -> None:
        self.settings: Settings = load_settings()
        self._engine = None

    def _open(self, *, create: bool):
        if self._engine is None:
            self._engine = open_database(self.settings.database_url, create=create)
            click.get_current_context().call_on_close(self._engine.dispose)
        return self._engine

    @property
    def engine(self):
        """The database, checked: there, answering, with our schema (never created here)."""
        return self._open(create=False)

    @property
    def sessions(self):
        return session_factory(self.engine)

    @property
    def zone(self):
        return self.settings.coordinator_zone

    def time(self, moment) -> str:
        """A stored time (naive UTC) in the coordinators' zone, with its abbreviation."""
        return local_time(moment, self.zone)


pass_ctx = click.make_pass_decorator(Context, ensure=True)


class OutreachGroup(click.Group):
    """The error boundary: a known failure is one or two lines and a non-zero exit (a missing or malformed
    setting exits 2); an unexpected one is one line with a reference, its traceback logged with ``--debug``."""

    def invoke(self, ctx: click.Context):
        from .errors import explain

        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # the reader stopped reading (`| head`): end quietly, as Unix tools do
            _quiet_stdout()
            ctx.exit(0)
        except Exception as exc:
            context = ctx.find_object(Context)
            try:
                url = context.settings.database_url if context else load_settings().database_url
            except Exception:
                url = None
            known = explain(exc, url)
            if known is not None:
                message, code = known
                click.echo(f"error: {message}", err=True)
                ctx.exit(code)
            from .logs import error_summary

            reference = secrets.token_hex(4)
            if ctx.params.get("debug"):
                log.error("unexpected failure, reference %s", reference, exc_info=exc)
                hint = "the traceback is in the log above"
            else:
                hint = "run the command again with `outreach --debug …` to log the traceback"
            click.echo(f"error: unexpected failure ({error_summary(exc, limit=200)}); reference {reference}; {hint}",
                       err=True)
            ctx.exit(1)


@click.group(cls=OutreachGroup, context_settings={"max_content_width": 120, "terminal_width": 120},
             help="SMS follow-up outreach for addiction-treatment outcome research.")
@click.option("--debug", is_flag=True, help="Log the traceback of an unexpected failure.")
def cli(debug: bool) -> None:
    pass


@cli.group(help="Database schema management.")
def db() -> None:
    pass


@db.command("upgrade", help="Create or migrate the database to the latest schema (safe to repeat).")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    upgrade(ctx._open(create=True))
    click.echo("database is at the latest schema")


@db.command("downgrade", help="Take the database's schema back to REVISION (e.g. 0008), for going back to an older "
                              "version of outreach; asks first. Columns and tables added since are dropped.")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def db_downgrade(ctx: Context, revision: str, yes: bool) -> None:
    from alembic import command
    from alembic.util import CommandError

    from .db import alembic_config

    engine = ctx._open(create=False)
    if not yes and not click.confirm(f"take the schema of {hide_password(ctx.settings.database_url)} back to "
                                     f"{revision}? what later revisions added is dropped"):
        click.echo("not changed")
        return
    try:
        command.downgrade(alembic_config(engine), revision)
    except CommandError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except RuntimeError as exc:  # a migration that refuses (e.g. patients with several stays for 0002)
        click.echo(f"error: the schema was not changed: {exc}", err=True)
        sys.exit(1)
    click.echo(f"database schema is at {revision}")


GROUP_ERRORS_OVER = 20  # more errors than this are shown grouped by column and kind
FIRST_ERRORS = 10


def _input_file(path: Path) -> Path:
    """A file named on the command line, or an error naming where it was looked for."""
    from .errors import InputFileMissing

    where = path.absolute()
    if where.is_dir():
        raise InputFileMissing(f"{where} is a folder, not a file")
    if not where.is_file():
        looked = "" if path.is_absolute() else f" (looked for {str(path)!r} in {Path.cwd()})"
        raise InputFileMissing(f"no file at {where}{looked}")
    return path


@cli.command("import-discharges", help="Import a discharge CSV (one row per stay) with alliance ratings.")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Write the valid rows; put invalid ones in FILE.rejected.csv.")
@click.option("--allow-rating-changes", is_flag=True,
              help="Change the ratings of stays that already have follow-up answers (audited, old and new values).")
@click.option("--keep-identifiers", is_flag=True,
              help="Keep full phone numbers in FILE.rejected.csv (by default they are masked).")
@click.option("--strict", is_flag=True,
              help="Treat warnings (no alliance score, a shared phone, a dropped extension, a number that cannot "
                   "receive texts) as errors.")
@click.option("--all-errors", "all_errors", is_flag=True,
              help="List every error line by line (by default, many errors are grouped by column and problem).")
@pass_ctx
def import_discharges_cmd(ctx: Context, file: Path, skip_invalid: bool, allow_rating_changes: bool,
                          keep_identifiers: bool, strict: bool, all_errors: bool) -> None:
    from .db import current_actor
    from .jobs.imports import record_import
    from .study.importer import import_discharges

    def run(session):
        result = import_discharges(session, file, ctx.settings, skip_invalid=skip_invalid,
                                   allow_rating_changes=allow_rating_changes, keep_identifiers=keep_identifiers,
                                   strict=strict)
        if result.written:  # the console's import history lists it beside the console's own
            record_import(session, file, result, actor=current_actor())
        return result

    _print_import(_run_import(ctx, file, run), all_errors=all_errors, keep_identifiers=keep_identifiers)


def _run_import(ctx: Context, file: Path, run):
    """``run(session)`` in one transaction, for a file that is there; a file that cannot be read at all is said in
    words and exits 1."""
    from .study.importer import ImportFileError

    _input_file(file)
    try:
        with unit_of_work(ctx.sessions) as session:
            return run(session)
    except ImportFileError as exc:
        click.echo(str(exc), err=True)
        click.echo("nothing was imported", err=True)
        sys.exit(1)


def _print_import(result, *, all_errors: bool, keep_identifiers: bool) -> None:
    """What an import did, as the discharge and admission imports both say it; exits 1 when nothing was written."""
    if all_errors or len(result.errors) <= GROUP_ERRORS_OVER:
        for error in result.errors:
            click.echo(str(error), err=True)
    else:  # a coordinator fixes a kind of problem at a time: the kinds first, then the first lines
        click.echo(f"{len(result.errors):,} problems, by column and kind:", err=True)
        for group in result.grouped_errors():
            click.echo(f"  {group}", err=True)
        click.echo(f"the first {FIRST_ERRORS} one by one:", err=True)
        for error in result.errors[:FIRST_ERRORS]:
            click.echo(str(error), err=True)
        click.echo("(--all-errors lists every one)", err=True)
    if not result.written:
        click.echo(f"{len(result.errors)} problem(s) in {result.rejected} row(s); nothing was imported "
                   "(fix the file, or use --skip-invalid)", err=True)
        sys.exit(1)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.warnings:
        click.echo(f"{len(result.warnings)} warning(s): those rows were imported; check them, or use --strict to "
                   "refuse them", err=True)
    if result.opt_outs_lifted:
        click.echo(f"opt-out lifted for {len(result.opt_outs_lifted)} patient(s) whose phone number changed after a "
                   f"'wrong number' reply (the opt-out belonged to the old number; audited): "
                   f"{', '.join(result.opt_outs_lifted)}")
    if result.consent_withdrawn:
        click.echo(f"consent to texts withdrawn for {len(result.consent_withdrawn)} patient(s) (audited with the "
                   f"line): their queued texts are cancelled and nothing more is sent: "
                   f"{', '.join(result.consent_withdrawn)}")
    if result.consent_given:
        click.echo(f"consent to texts given for {len(result.consent_given)} patient(s) (audited with the line); "
                   f"the next wave may invite them: {', '.join(result.consent_given)}")
    if result.phones_changed:
        click.echo(f"phone number changed for {result.phones_changed} patient(s) (audited with the line)"
                   + (f"; {result.invitations_requeued} queued invitation(s) now go to the new number"
                      if result.invitations_requeued else ""))
    if result.texts_cancelled:
        click.echo(f"{result.texts_cancelled} queued text(s) will not be sent (consent withdrawn, or written for an "
                   "old number: see the patient's page)")
    click.echo(result.summary)
    if result.rating_changes:
        click.echo(f"alliance ratings changed on {result.rating_changes} stay(s) with follow-up answers "
                   "(audited with the old and new values)")
    if result.rejected_path:
        masked = "" if keep_identifiers else " (phone numbers masked; --keep-identifiers keeps them)"
        click.echo(f"rejected rows written to {result.rejected_path}{masked}")
    if result.unread_lines:  # rows of the file were not read as rows: never a plain success
        spans = ", ".join(f"lines {a}-{b}" for a, b in result.unread_lines)
        click.echo(f"error: {spans} of the file were not read as rows (an unclosed quote read them into one field); "
                   "fix the quote and import those rows again", err=True)
        sys.exit(1)


@cli.command("demo", help="Run the whole cycle on a fresh SQLite database under ./demo/ (no credentials).")
@click.option("--dir", "directory", default="demo", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the demo's files; one an earlier demo made is replaced, any other existing path "
                   "is refused.")
@click.option("--patients", default=400, show_default=True, type=COUNT,
              help="How many synthetic discharges (400: enough for the report's adjusted primary model).")
@click.option("--seed", default=7, show_default=True)
def demo_cmd(directory: Path, patients: int, seed: int) -> None:
    from analysis.summary import analyse_demo
    from webhooks.app import create_app

    from .demo import DemoDirError, run_demo

    try:
        run_demo(directory, app_factory=create_app, analyse=analyse_demo, patients=patients, seed=seed,
                 echo=click.echo)
    except DemoDirError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@cli.command("serve", help="The console and the worker on the demo's data at http://127.0.0.1:PORT (simulator).")
@click.option("--dir", "directory", default="demo", type=click.Path(file_okay=False, path_type=Path), show_default=True,
              help="The demo's folder: its database is served; an empty or missing folder gets the demo first.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535),
              help="Port on 127.0.0.1 to serve the console on.")
def serve_cmd(directory: Path, port: int) -> None:
    from analysis.summary import analyse_demo
    from webhooks.app import create_app

    from .demo import DemoDirError, run_demo
    from .serve import serve

    def prepare(where: Path) -> None:
        run_demo(where, app_factory=create_app, analyse=analyse_demo, echo=click.echo)

    try:
        serve(directory, port=port, app_factory=create_app, prepare_demo=prepare, echo=click.echo)
    except DemoDirError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@cli.group(help="The crisis detector: test a text; list texts coordinators flagged that it missed.")
def lexicon() -> None:
    pass


@lexicon.command("test", help="Say whether MESSAGE would trigger the crisis check, and which rule matched.")
@click.argument("message")
def lexicon_test(message: str) -> None:
    from conversations.crisis import detect

    match = detect(message)
    if match is None:
        click.echo("no: this text would not trigger the crisis check")
        return
    click.echo(f"yes: this text would trigger the crisis check (safety reply, alert, survey paused)\n"
               f"rule: {match.rule}\nwhy: {match.why}")


@lexicon.command("missed", help="Texts a coordinator flagged as crisis that the phrase list did not catch.")
@pass_ctx
def lexicon_missed(ctx: Context) -> None:
    from .staff.alerts import missed_by_detector

    with unit_of_work(ctx.sessions) as session:
        missed = missed_by_detector(session)
    if not missed:
        click.echo("no flagged texts: the phrase list has missed nothing coordinators saw")
        return
    for alert_id, at, text, who in missed:
        click.echo(f"#{alert_id}  {ctx.time(at)}  flagged by {who or 'unknown'}: {text}")
    click.echo(f"{len(missed)} text(s); add them to the crisis test corpus and the phrase list")


@cli.command("import-admissions", short_help="Import an admission CSV: stays that have begun, before discharge.",
             help="Import an admission CSV: stays that have begun (patient_id, phone, admission_date, care_team, "
                  "sms_consent, alliance_checkins; optional episode_id, language, timezone). A later discharge row "
                  "completes the stay.")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Write the valid rows; put invalid ones in FILE.rejected.csv.")
@click.option("--keep-identifiers", is_flag=True,
              help="Keep full phone numbers in FILE.rejected.csv (by default they are masked).")
@click.option("--strict", is_flag=True, help="Treat warnings (a shared phone, a dropped extension) as errors.")
@click.option("--all-errors", "all_errors", is_flag=True, help="List every error line by line.")
@pass_ctx
def import_admissions_cmd(ctx: Context, file: Path, skip_invalid: bool, keep_identifiers: bool, strict: bool,
                          all_errors: bool) -> None:
    from .care.admissions import import_admissions
    from .db import current_actor

    result = _run_import(ctx, file, lambda session: import_admissions(
        session, file, ctx.settings, skip_invalid=skip_invalid, keep_identifiers=keep_identifiers, strict=strict,
        actor=current_actor()))
    _print_import(result, all_errors=all_errors, keep_identifiers=keep_identifiers)


@cli.group("care-teams", help="Care teams: a name and its clinicians, who see only their teams' patients.")
def care_teams() -> None:
    pass


def _care_command(ctx: Context, action, done: str) -> None:
    from .care.teams import CareTeamError
    from .db import current_actor

    try:
        with unit_of_work(ctx.sessions) as session:
            action(session, current_actor())
    except CareTeamError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(done)


@care_teams.command("add", help="Create a care team.")
@click.argument("name")
@pass_ctx
def care_teams_add(ctx: Context, name: str) -> None:
    from .care.teams import add_team

    _care_command(ctx, lambda s, actor: add_team(s, name, actor=actor), f"care team {name.strip()!r} added")


@care_teams.command("add-member", help="Make a console account a member of a care team (audited).")
@click.argument("team")
@click.argument("email")
@pass_ctx
def care_teams_add_member(ctx: Context, team: str, email: str) -> None:
    from .care.teams import add_member

    _care_command(ctx, lambda s, actor: add_member(s, team, email, actor=actor), f"{email} is a member of {team!r}")


@care_teams.command("remove-member", help="Take a console account out of a care team (audited).")
@click.argument("team")
@click.argument("email")
@pass_ctx
def care_teams_remove_member(ctx: Context, team: str, email: str) -> None:
    from .care.teams import remove_member

    _care_command(ctx, lambda s, actor: remove_member(s, team, email, actor=actor),
                  f"{email} is no longer a member of {team!r}")


@care_teams.command("list", help="Every care team and its members.")
@pass_ctx
def care_teams_list(ctx: Context) -> None:
    from .care.teams import list_teams

    with unit_of_work(ctx.sessions) as session:
        teams = list_teams(session)
    if not teams:
        click.echo("no care teams yet (outreach care-teams add NAME)")
    for name, members in teams:
        click.echo(f"{name}: {', '.join(members) or 'no members'}")


@cli.group(help="The alliance during treatment: alliance alerts, a patient's check-ins.")
def alliance() -> None:
    pass


@alliance.command("alerts", help="Open alliance alerts: study id, care team, the rule that fired, the statements that "
                                 "fell most, when (--all: acknowledged ones too, with who and the note). Audited, "
                                 "as in the console.")
@click.option("--all", "show_all", is_flag=True, help="Also the acknowledged alerts.")
@pass_ctx
def alliance_alerts(ctx: Context, show_all: bool) -> None:
    from .care.alerts import audit_alerts_shown, list_alerts
    from .db import current_actor
    from .study.instrument import load_instrument

    instrument = load_instrument(ctx.settings.get("ALLIANCE_INSTRUMENT"))
    labels = {s.name: s.label for s in instrument.subscales}
    with unit_of_work(ctx.sessions) as session:
        rows = list_alerts(session, include_acknowledged=show_all)
        audit_alerts_shown(session, "viewed_alliance_alerts", rows, actor=current_actor(), via="cli",
                           **({"all": True} if show_all else {}))
    if not rows:
        click.echo("no alliance alerts yet" if show_all else "no open alliance alerts")
        return
    for a in rows:
        statements = (f"statement{'s' if len(a.statements) > 1 else ''} {', '.join(map(str, a.statements))}"
                      f" ({labels.get(a.subscale, a.subscale)})" if a.statements else "no statement")
        state = (f"acknowledged {ctx.time(a.acknowledged_at)} by {a.acknowledged_by}: {a.note}"
                 if a.acknowledged_at else "open")
        click.echo(f"#{a.id}  {ctx.time(a.raised_at)}  {a.patient_id}  {a.team or '(no team)'}  {a.rule}: {a.says}; "
                   f"{statements}  {state}")
    if show_all:
        click.echo(f"{len(rows)} alliance alert(s), {sum(a.acknowledged_at is None for a in rows)} open")


@alliance.command("flagged", help="The share of check-ins flagged each week (alert level, and watch level or above), "
                                  "to calibrate the rules (the anchors aim for roughly 10 to 15%).")
@pass_ctx
def alliance_flagged(ctx: Context) -> None:
    from .care.alerts import flagged_share_by_week

    with unit_of_work(ctx.sessions) as session:
        weeks = flagged_share_by_week(session)
    if not weeks:
        click.echo("no check-ins yet")
        return
    click.echo("week of       check-ins   alert        watch or alert")
    for monday, total, alerted, flagged in weeks:
        click.echo(f"{monday}  {total:9d}   {alerted:4d} {100 * alerted / total:5.1f}%   {flagged:4d} "
                   f"{100 * flagged / total:5.1f}%")


@alliance.command("checkins", help="A patient's check-ins: when, how, treatment week, the six ratings, mean, "
                                   "subscales and the rules each met. Audited, as in the console.")
@click.argument("patient_id")
@pass_ctx
def alliance_checkins(ctx: Context, patient_id: str) -> None:
    from sqlalchemy import select

    from .care.checkins import checkins_of
    from .db import audit, current_actor
    from .models import Patient

    with unit_of_work(ctx.sessions) as session:
        pk = session.scalar(select(Patient.id).where(Patient.patient_id == patient_id))
        if pk is None:
            click.echo(f"error: there is no patient {patient_id!r}", err=True)
            sys.exit(1)
        rows = checkins_of(session, pk)
        audit(session, "viewed_checkins", actor=current_actor(), patient_id=pk, via="cli", checkins=len(rows))
    if not rows:
        click.echo(f"no check-ins for {patient_id}")
        return
    for c in rows:
        items = " ".join("-" if v is None else str(v) for v in c.items)
        mean = "-" if c.mean_score is None else f"{c.mean_score:.2f}"
        subs = ", ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in (c.subscale_scores or {}).items())
        flags = "; ".join(f"{f['level']}: {f['rule']}" for f in c.flags or []) or "no flag"
        click.echo(f"{ctx.time(c.taken_at)}  week {c.treatment_week}  {c.method:<6}  [{items}]  mean {mean}  "
                   f"({subs})  {flags}")
    click.echo(f"{len(rows)} check-in(s)")


@cli.group(help="Crisis alerts: list the open ones, resolve them.")
def alerts() -> None:
    pass


@alerts.command("list", help="Show open crisis alerts: patient_id, time and message (--all: resolved ones too).")
@click.option("--all", "show_all", is_flag=True, help="Also the resolved alerts, with who resolved them and the note.")
@pass_ctx
def alerts_list(ctx: Context, show_all: bool) -> None:
    from .staff.alerts import open_alerts
    from .phones import mask

    zone = ctx.zone
    with unit_of_work(ctx.sessions) as session:
        rows = open_alerts(session, include_resolved=show_all)
    if not rows:
        click.echo("no alerts yet" if show_all else "no open alerts")
        return
    for a in rows:
        who = f"patient {a.patient_id}" if a.patient_id else f"unknown sender {mask(a.from_number)}"
        status = (f"resolved {local_time(a.resolved_at, zone)} by {a.resolved_by}: {a.resolution_note}"
                  if a.state == AlertState.RESOLVED else f"open (survey {a.followup_state or '-'})")
        click.echo(f"#{a.id}  {local_time(a.opened_at, zone)}  {who}  {status}\n      \"{a.message}\"")
    if show_all:
        still_open = sum(a.resolved_at is None for a in rows)
        click.echo(f"{len(rows)} alert(s), {still_open} open")


@alerts.command("resolve", help="Close an alert with a note (audited); a paused survey may resume.")
@click.argument("alert_id", type=COUNT)
@click.option("--note", required=True, help="What was done.")
@pass_ctx
def alerts_resolve(ctx: Context, alert_id: int, note: str) -> None:
    from .staff.alerts import AlertError, resolve_alert
    from .db import current_actor

    zone = ctx.zone
    try:
        with unit_of_work(ctx.sessions) as session:
            alert = resolve_alert(session, alert_id, note, current_actor(), zone=zone)
    except AlertError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"alert {alert_id} resolved at {local_time(alert.resolved_at, zone)}")


@cli.group(help="Console accounts: add people, list them, disable, change roles, send a new password link.")
def users() -> None:
    pass


LOCAL_CONSOLE = "http://localhost:5000"


def _set_password_url(ctx: Context, token: str) -> str:
    base = (ctx.settings.public_base_url or LOCAL_CONSOLE).rstrip("/")
    return f"{base}/console/set-password/{token}"


def _link_note(ctx: Context) -> None:
    """Where the link points when PUBLIC_BASE_URL is not set, said where the link is printed."""
    if not ctx.settings.public_base_url:
        click.echo(f"note: PUBLIC_BASE_URL is not set, so the link points to {LOCAL_CONSOLE} (the console on this "
                   "machine); set PUBLIC_BASE_URL to the console's public address for a link others can open")


def _account_command(ctx: Context, action):
    """Run ``action(session)`` in one unit of work; an AccountError becomes one line on stderr and exit 1."""
    from .staff.accounts import AccountError

    try:
        with unit_of_work(ctx.sessions) as session:
            return action(session)
    except AccountError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


_ROLE = click.Choice(ROLES, case_sensitive=False)


@users.command("add", help="Create a console account and print a one-time link (24 hours) to set its password.")
@click.argument("email")
@click.option("--role", required=True, type=_ROLE, help="admin, coordinator, researcher or clinician (sees only their care teams' patients).")
@pass_ctx
def users_add(ctx: Context, email: str, role: str) -> None:
    from .staff.accounts import add_user
    from .db import current_actor

    user, token = _account_command(ctx, lambda s: add_user(s, email, role, actor=current_actor()))
    click.echo(f"account created for {user.email} ({user.role}); set a password within 24 hours at: "
               f"{_set_password_url(ctx, token)}")
    _link_note(ctx)


@users.command("list", help="Every console account: role, active or disabled, 2FA, last sign-in.")
@pass_ctx
def users_list(ctx: Context) -> None:
    from .staff.accounts import list_users
    from .clock import utcnow

    people = _account_command(ctx, list_users)
    if not people:
        click.echo("no accounts yet; add one with `outreach users add EMAIL --role admin`")
        return
    now = utcnow()
    width = max(len(u.email) for u in people)
    click.echo(f"{'email':<{width}}  {'role':<11}  {'status':<14}  {'2FA':<3}  last sign-in")
    for u in people:
        if u.disabled_at is not None:
            status = "disabled"
        elif u.locked_until is not None and u.locked_until > now:
            status = "locked"
        elif u.password_hash is None:
            status = "no password"
        else:
            status = "active"
        last = ctx.time(u.last_sign_in_at) if u.last_sign_in_at else "never"
        click.echo(f"{u.email:<{width}}  {u.role:<11}  {status:<14}  {'on' if u.totp_secret else 'off':<3}  {last}")


@users.command("disable", help="Stop an account from signing in (its password links stop working; nothing is deleted).")
@click.argument("email")
@pass_ctx
def users_disable(ctx: Context, email: str) -> None:
    from .staff.accounts import disable_user
    from .db import current_actor

    user = _account_command(ctx, lambda s: disable_user(s, email, actor=current_actor()))
    click.echo(f"account {user.email} disabled")


@users.command("unlock", help="End a lock after too many wrong passwords.")
@click.argument("email")
@pass_ctx
def users_unlock(ctx: Context, email: str) -> None:
    from .staff.accounts import unlock_user
    from .db import current_actor

    user = _account_command(ctx, lambda s: unlock_user(s, email, actor=current_actor()))
    click.echo(f"account {user.email} unlocked")


@users.command("enable", help="Let a disabled account sign in again.")
@click.argument("email")
@pass_ctx
def users_enable(ctx: Context, email: str) -> None:
    from .staff.accounts import enable_user
    from .db import current_actor

    user = _account_command(ctx, lambda s: enable_user(s, email, actor=current_actor()))
    click.echo(f"account {user.email} enabled")


@users.command("role", help="Change an account's role (admin, coordinator, researcher or clinician).")
@click.argument("email")
@click.argument("role", type=_ROLE)
@pass_ctx
def users_role(ctx: Context, email: str, role: str) -> None:
    from .staff.accounts import set_role
    from .db import current_actor

    user = _account_command(ctx, lambda s: set_role(s, email, role, actor=current_actor()))
    click.echo(f"{user.email} is now {user.role}")


@users.command("reset", help="Print a new one-time link (24 hours) to set the password; earlier links stop working.")
@click.argument("email")
@click.option("--turn-off-2fa", "turn_off_2fa", is_flag=True,
              help="Also turn off the authenticator-app code (a lost phone); they can set it up again.")
@pass_ctx
def users_reset(ctx: Context, email: str, turn_off_2fa: bool) -> None:
    from .staff.accounts import AccountError, disable_totp, find_user, new_password_link_token, normalise_email
    from .db import current_actor

    def reset(session):
        user = find_user(session, email)
        if user is None:
            raise AccountError(f"there is no account for {normalise_email(email)}")
        had_2fa = bool(user.totp_secret)
        if turn_off_2fa and had_2fa:
            disable_totp(session, user, actor=current_actor())
        return user, new_password_link_token(session, user, actor=current_actor()), had_2fa

    user, token, had_2fa = _account_command(ctx, reset)
    if turn_off_2fa:
        click.echo(f"authenticator-app code turned off for {user.email}" if had_2fa else
                   f"{user.email} had no authenticator-app code; nothing to turn off")
    click.echo(f"new link for {user.email}; set a password within 24 hours at: {_set_password_url(ctx, token)}")
    _link_note(ctx)


@cli.group(help="Inbound messages.")
def inbox() -> None:
    pass


@inbox.command("list", help="Patients' texts waiting for a person (not an answer, a keyword or a crisis text), "
                             "oldest first, with their age; --overdue: only those older than INBOX_RESPONSE_HOURS. "
                             "Shows the texts: audited, as in the console.")
@click.option("--overdue", is_flag=True, help="Only the texts waiting longer than INBOX_RESPONSE_HOURS.")
@pass_ctx
def inbox_list(ctx: Context, overdue: bool) -> None:
    from .db import current_actor
    from .staff.inbox import inbox_counts, inbox_items

    with unit_of_work(ctx.sessions) as session:
        counts = inbox_counts(session, ctx.settings)
        items = inbox_items(session, ctx.settings, overdue_only=overdue, actor=current_actor())
    click.echo(f"{counts.waiting} text(s) waiting, {counts.overdue} overdue "
               f"(INBOX_RESPONSE_HOURS {ctx.settings.inbox_response_hours:g})")
    for i in items:
        hours = int(i.age.total_seconds() // 3600)
        click.echo(f"#{i.message_id}  {ctx.time(i.at)}  waiting {hours} h{'  OVERDUE' if i.overdue else ''}  "
                   f"{i.who}  ({i.reason}): {i.body}")


@inbox.command("replay", short_help="Process failed inbound messages again, in arrival order.",
               help="Process failed inbound messages again (and any a dead request left unprocessed), in "
                    "arrival order; their replies are queued for the worker.")
@pass_ctx
def inbox_replay(ctx: Context) -> None:
    from .messaging.inbound import Inbox

    results = Inbox(ctx.sessions, ctx.settings).replay_failed()
    for message_id, status in results:
        click.echo(f"message {message_id}: {status}")
    click.echo(f"replayed {len(results)} message(s), {sum(s == Processing.PROCESSED for _, s in results)} processed")


@inbox.command("spool", short_help="Texts waiting in this host's spool after a database outage.",
               help="How many texts and status callbacks received while the database was unreachable wait in "
                    "this host's spool (SPOOL_DIR), and how old the oldest is.  Works while the database is "
                    "down.  --drain applies them now (the web app and the worker do it on their own once the "
                    "database answers).")
@click.option("--drain", is_flag=True, help="Store and apply the spooled requests now, in arrival order.")
@pass_ctx
def inbox_spool(ctx: Context, drain: bool) -> None:
    from .messaging.inbound import Inbox
    from .clock import utcnow
    from .messaging.spool import Spool, spool_dir

    spool, stopped = Spool(spool_dir(ctx.settings)), False
    if drain:
        result = Inbox(ctx.sessions, ctx.settings, spool, report_outages=False).drain_spool(wait=30.0)
        if result.busy:
            raise click.ClickException("another process is draining the spool right now; try again in a moment")
        if result.stopped_by is not None:
            click.echo(f"{result}; stopped: the database is unavailable ({type(result.stopped_by).__name__})")
            stopped = True
        else:
            click.echo(str(result))
    waiting, oldest = spool.depth()
    if not waiting:
        click.echo(f"spool {spool.dir}: empty")
    else:
        age = max(0, int((utcnow() - oldest).total_seconds())) if oldest else None
        click.echo(f"spool {spool.dir}: {waiting} waiting" + (
            f"; the oldest received {ctx.time(oldest)} ({_age(age)} ago)" if oldest else ""))
    aside = spool.set_aside()
    if aside:
        click.echo(f"{len(aside)} set aside because they could not be read or applied (kept as *.bad in the "
                   f"spool folder; the log says why)")
    if stopped:
        raise SystemExit(1)


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@cli.group(short_help="Patients: opt back in, withdraw from the study, list withdrawals.",
           help="Patients: opt a patient back in once their consent is confirmed again; withdraw a participant "
                "from the study; list the withdrawals.")
def patients() -> None:
    pass


@patients.command("opt-in", help="Opt a patient back in after confirming their consent again, e.g. once a wrong "
                                 "number is corrected (audited with the reason).")
@click.argument("patient_id")
@click.option("--reason", required=True, help="How consent was confirmed again (kept in the audit log).")
@pass_ctx
def patients_opt_in(ctx: Context, patient_id: str, reason: str) -> None:
    from .staff.contact import opt_in
    from .db import current_actor
    from .staff.patients import PatientError

    try:
        with unit_of_work(ctx.sessions) as session:
            done = opt_in(session, patient_id, reason, actor=current_actor())
    except PatientError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"patient {done.patient_id} ({done.phone}) opted back in (opted out since "
               f"{ctx.time(done.opted_out_at)}); audited with your reason")
    if done.after_stop:
        click.echo("note: they had texted STOP; the carrier blocks texts to that number until the patient texts "
                   "START")
    if not done.sms_consent:
        click.echo("note: their discharge file says they did not consent to texts (sms_consent); they will not be "
                   "invited until a file says they do")


@patients.command("withdraw", help="Withdraw a participant from the study: nothing more is sent to them (their own "
                                   "texts get a neutral acknowledgement; a crisis text still gets the safety reply and "
                                   "an alert). --data keep: their answers stay, flagged in the export; --data remove: "
                                   "their answers and texts are deleted and their phone number erased. Audited; "
                                   "no keyword undoes it.")
@click.argument("patient_id")
@click.option("--reason", required=True, help="Why they withdrew (kept in the audit record; no phone numbers).")
@click.option("--data", "data", type=click.Choice(["keep", "remove"]), required=True,
              help="What becomes of the answers already given: keep (flagged) or remove (deleted).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (the consequences are still printed).")
@pass_ctx
def patients_withdraw(ctx: Context, patient_id: str, reason: str, data: str, yes: bool) -> None:
    from .db import current_actor
    from .study.withdrawal import WithdrawalError, check_choice, consequences, pk_of, withdraw

    key = ctx.settings.export_key if ctx.settings.optional("EXPORT_KEY") else None
    try:
        check_choice(data, reason)
        with unit_of_work(ctx.sessions) as session:
            said = consequences(session, pk_of(session, patient_id), data)
        for line in said.words():
            click.echo(f"- {line}")
        if not yes:
            click.confirm(f"Withdraw {patient_id} ({data})?", abort=True)
        with unit_of_work(ctx.sessions) as session:
            done = withdraw(session, study_id=patient_id, data=data, reason=reason, actor=current_actor(), key=key,
                            via="cli")
    except WithdrawalError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{done.study_id} withdrawn ({data}): {done.texts_cancelled} queued text(s) cancelled, "
               f"{done.followups_closed} open follow-up(s) ended"
               + (f"; {done.answers_deleted} answer(s) and {done.texts_deleted} text(s) deleted, phone number erased"
                  if data == "remove" else "") + "; audited")


@patients.command("withdrawn", help="Every participant who withdrew: when, by whom, their choice about the data, the "
                                    "reason and the export pseudonym (with EXPORT_KEY), for the reports to the board.")
@pass_ctx
def patients_withdrawn(ctx: Context) -> None:
    from .study.withdrawal import withdrawn

    key = ctx.settings.export_key if ctx.settings.optional("EXPORT_KEY") else None
    with unit_of_work(ctx.sessions) as session:
        rows = withdrawn(session, key)
    if not rows:
        click.echo("no participant has withdrawn")
        return
    for w in rows:
        days = f", {w.days_after_discharge} days after discharge" if w.days_after_discharge is not None else ""
        click.echo(f"{ctx.time(w.at)}  {w.study_id}  pseudonym {w.pseudonym or '(set EXPORT_KEY)'}  data: {w.data}"
                   f"{days}  by {w.by}: {w.reason}")
    click.echo(f"{len(rows)} withdrawal(s)")


@cli.group(help="Retention: erase identifiers when the retention settings say so.")
def retention() -> None:
    pass


@retention.command("run", help="Apply the retention rules now (the worker does it once a day): erase the words of "
                               "old texts and answers, the phone numbers of participants with nothing left to send "
                               "and of old texts from numbers no participant has, and old audit rows. Prints what it erases, by kind and count.")
@click.option("--dry-run", is_flag=True, help="Print what would be erased; change nothing.")
@pass_ctx
def retention_run(ctx: Context, dry_run: bool) -> None:
    from .study.retention import run

    click.echo(run(ctx.sessions, ctx.settings, dry_run=True).describe())  # what it is about to do, first
    if not dry_run:
        click.echo(run(ctx.sessions, ctx.settings).describe())


@cli.group(help="The study as a whole: close it at its end.")
def study() -> None:
    pass


@study.command("close", help="Close the study: end all contact and erase every phone number and every text's words "
                             "at once, keeping the coded, de-identified data and the audit. Asks for the number of "
                             "participants to be typed back.")
@click.option("--reason", required=True, help="Why the study is closed (kept in the audit log).")
@pass_ctx
def study_close(ctx: Context, reason: str) -> None:
    from .db import current_actor
    from .study.retention import close_study, participant_count

    with unit_of_work(ctx.sessions) as session:
        n = participant_count(session)
    click.echo(f"This ends all contact with the study's {n} participant(s) and erases every phone number and the "
               "words of every text and free-text answer. Coded answers and the audit stay. It cannot be undone.")
    typed = click.prompt("Type the number of participants to confirm", default="", show_default=False)
    if typed.strip() != str(n):
        click.echo("error: that is not the number of participants; nothing was changed", err=True)
        sys.exit(1)
    with unit_of_work(ctx.sessions) as session:
        done = close_study(session, actor=current_actor(), reason=reason)
    click.echo(f"study closed: {done.texts_cancelled} queued text(s) cancelled, {done.followups_closed} open "
               f"follow-up(s) ended, {done.phones_erased} phone number(s) and the words of {done.texts_erased} text(s) "
               f"and {done.answers_erased} answer(s) erased; audited")


@cli.command("events", help="Contact events, newest first: opt-outs, 'wrong number' replies, phone and consent "
                            "changes.")
@click.option("--kind", type=click.Choice(["opted_out", "opted_in", "wrong_number", "opt_in_refused", "phone_invalid",
                                           "phone_corrected", "undeliverable", "consent_withdrawn",
                                           "consent_given"]),
              help="Only this kind of event (default: all of them).")
@click.option("--limit", default=50, show_default=True, type=COUNT, help="At most this many events.")
@pass_ctx
def events_cmd(ctx: Context, kind: str | None, limit: int) -> None:
    from .staff.contact import contact_events

    with unit_of_work(ctx.sessions) as session:
        rows = contact_events(session, kind, limit)
    if not rows:
        click.echo(f"no {kind.replace('_', ' ') + ' ' if kind else ''}events")
        return
    for e in rows:
        who = f"patient {e.patient_id}" if e.patient_id else "no patient"
        sent = f" from {e.from_number}" if e.from_number else ""
        text = f' "{e.text}"' if e.text else ""
        now = (f"now: {'opted out' if e.opted_out_now else 'can be texted'}, phone {e.phone_now}"
               if e.patient_id else "")
        click.echo(f"{ctx.time(e.at)}  {who}  {e.words} (by {e.actor}){sent}{text}\n      {now}".rstrip())
    click.echo(f"{len(rows)} event(s), newest first"
               + (f" (the latest {limit}; --limit shows more)" if len(rows) == limit else ""))


@cli.command("responses", short_help="Who replied at a time point (study id, masked phone, survey, last reply).",
             help="Who replied at a time point: study id, masked phone, where the survey stands and the last reply, "
                  "for coordinators who follow up by phone.")
@click.option("--timepoint", type=int, required=True, help="Days after discharge (one of FOLLOWUP_DAYS).")
@pass_ctx
def responses_cmd(ctx: Context, timepoint: int) -> None:
    from .staff.contact import responders
    from .study.waves import check_timepoint

    try:
        check_timepoint(ctx.settings, timepoint)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with unit_of_work(ctx.sessions) as session:
        rows = responders(session, timepoint)
    if not rows:
        click.echo(f"nobody has replied at the {timepoint}-day time point yet")
        return
    width = max(len(r.patient_id) for r in rows)
    click.echo(f"{'study id':<{width}}  {'phone':<13}  {'last reply':<20}  {'replies':>7}  survey")
    for r in rows:
        click.echo(f"{r.patient_id:<{width}}  {r.phone:<13}  {ctx.time(r.last_reply_at):<20}  {r.replies:>7}  "
                   f"{r.state_words}")
    click.echo(f"{len(rows)} patient(s) replied at {timepoint} days, the latest reply first")


@cli.command("chat", short_help="Preview a survey as the patient (nothing stored or sent).", help="Preview a survey as the patient: signed texts to the real webhook, run on a throw-away "
                          "copy of the patient and their open follow-up, so nothing is stored or sent.")
@click.argument("patient_id")
@click.option("--url", help="Talk to the running server at URL instead: every line is stored there, marked as "
                            "a preview that the export leaves out (for a test deployment).")
@click.option("--timepoint", type=int, help="Preview the survey of this time point from its invitation (default: "
                                            "where the patient's open follow-up stands, else the first time point). "
                                            "With --url: create an invited follow-up at it if none is open.")
@pass_ctx
def chat(ctx: Context, patient_id: str, url: str | None, timepoint: int | None) -> None:
    from webhooks.app import create_app

    from .staff.chat import run_chat

    try:
        code = run_chat(ctx.settings, ctx.sessions, patient_id, url=url, timepoint=timepoint, app_factory=create_app)
    except ValueError as exc:  # a time point that is not one of FOLLOWUP_DAYS
        raise click.UsageError(str(exc)) from None
    sys.exit(code)


def _progress(label: str, total: int):
    """A progress bar on a terminal, plain progress lines otherwise.  Returns ``advance(n)``."""
    if sys.stdout.isatty():
        bar = click.progressbar(length=total, label=label)
        bar.__enter__()
        state = {"done": 0}

        def advance(n: int) -> None:
            bar.update(n)
            state["done"] += n
            if state["done"] >= total:
                bar.__exit__(None, None, None)

        return advance
    state = {"done": 0, "shown": -1}

    def advance_plain(n: int) -> None:
        state["done"] += n
        pct = int(100 * state["done"] / total) if total else 100
        if pct // 10 != state["shown"] // 10:
            state["shown"] = pct
            click.echo(f"{label}: {state['done']}/{total} ({pct}%)")

    return advance_plain


def _progress_of(label: str, total: int):
    """``_progress`` for a service that reports ``progress(done, total)`` (how far it is, not by how much)."""
    advance, shown = _progress(label, total), {"done": 0}

    def report(done: int, _total: int) -> None:
        if done > shown["done"]:
            advance(done - shown["done"])
            shown["done"] = done

    return report


def _as_of(value: str | None) -> dt.date:
    if not value:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date in the form YYYY-MM-DD") from None


@cli.group(help="Outreach waves: plan, launch and follow a time point's invitations.")
def waves() -> None:
    pass


def _print_plan(plan) -> None:
    from .phones import mask
    from .study.waves import REASONS

    click.echo(f"time point {plan.timepoint} days, as of {plan.as_of}: {len(plan.eligible)} eligible")
    for key, label in REASONS.items():
        click.echo(f"  excluded, {label}: {plan.excluded.get(key, 0)}")
    for key, count in sorted(plan.silenced.items()):
        click.echo(f"  open follow-ups that get no more texts, {REASONS[key]}: {count}")
    for c in plan.eligible[:5]:
        click.echo(f"  e.g. {c.patient_id}  {mask(c.phone)}  due {c.due}  ({c.language})")


@waves.command("plan", help="Show who would be invited at a time point and why others would not (writes nothing).")
@click.option("--timepoint", type=int, required=True, help="Days after discharge (one of FOLLOWUP_DAYS).")
@click.option("--as-of", "as_of", help="Date to plan for (YYYY-MM-DD, default today).")
@pass_ctx
def waves_plan(ctx: Context, timepoint: int, as_of: str | None) -> None:
    from .study.waves import plan_wave

    session = ctx.sessions()
    try:
        _print_plan(plan_wave(session, ctx.settings, timepoint, _as_of(as_of)))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        session.rollback()
        session.close()


@waves.command("launch", help="Create the follow-ups of a wave and queue its invitations (the worker sends them).")
@click.option("--timepoint", type=int, required=True, help="Days after discharge (one of FOLLOWUP_DAYS).")
@click.option("--as-of", "as_of", help="Date to launch for (YYYY-MM-DD, default today).")
@click.option("--limit", type=COUNT, help="Invite at most this many patients (earliest discharges first).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def waves_launch(ctx: Context, timepoint: int, as_of: str | None, limit: int | None, yes: bool) -> None:
    from .db import current_actor
    from .study.waves import launch_wave, plan_wave

    day = _as_of(as_of)
    with unit_of_work(ctx.sessions) as session:
        try:
            plan = plan_wave(session, ctx.settings, timepoint, day)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        _print_plan(plan)
        count = min(len(plan.eligible), limit) if limit is not None else len(plan.eligible)
        if count == 0:
            click.echo("nobody to invite; no wave recorded")
            return
        if not yes and not click.confirm(f"launch a wave inviting {count} patient(s)?"):
            click.echo("not launched")
            return
        wave, _ = launch_wave(session, ctx.settings, timepoint, day, actor=current_actor(), limit=limit,
                              progress=_progress_of("creating follow-ups", count), plan=plan)
    click.echo(f"wave {wave.id} launched: {wave.targeted} invitation(s) queued; `outreach worker` sends them")


def _check_timepoint_option(ctx: Context, timepoint: int | None) -> None:
    from .study.waves import check_timepoint

    if timepoint is not None:
        try:
            check_timepoint(ctx.settings, timepoint)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None


def _print_funnel(wave, f: dict) -> None:
    from .study.waves import OPEN_LABEL, OUTCOMES

    ctx = click.get_current_context().find_object(Context)
    state = (f"; cancelled by {wave.cancelled_by} at {ctx.time(wave.cancelled_at)}" if wave.cancelled_at else
             f"; PAUSED by {wave.paused_by} since {ctx.time(wave.paused_at)}" if wave.paused_at else "")
    click.echo(f"wave {wave.id}: {wave.timepoint_days}-day, as of {wave.as_of}, by {wave.created_by} at "
               f"{ctx.time(wave.created_at)}{state}")
    click.echo("  contact: " + "  ".join(f"{k} {f.get(k, 0)}" for k in ("targeted", "sent", "delivered", "failed",
                                                                         "replied")))
    click.echo("  outcome: " + "  ".join(f"{k.replace('_', ' ')} {f.get(k, 0)}" for k in OUTCOMES)
               + f"  (these add up to targeted; {OPEN_LABEL} {f.get(OPEN_LABEL, 0)}: conversations still running)")
    click.echo(f"  response rate {100 * f.get('response_rate', 0):.0f}% (completed or partial / targeted)")


@waves.command("list", help="Every wave with its contact funnel.")
@pass_ctx
def waves_list(ctx: Context) -> None:
    from sqlalchemy import select

    from .models import Wave
    from .study.waves import funnels

    with unit_of_work(ctx.sessions) as session:
        all_waves = session.scalars(select(Wave).order_by(Wave.id)).all()
        data = funnels(session)
        if not all_waves:
            click.echo("no waves yet")
        for w in all_waves:
            _print_funnel(w, data.get(w.id, {"targeted": 0}))


@waves.command("status", help="The contact funnel of one wave (default: the latest).")
@click.argument("wave_id", type=COUNT, required=False)
@pass_ctx
def waves_status(ctx: Context, wave_id: int | None) -> None:
    from sqlalchemy import select

    from .models import Wave
    from .study.waves import failure_reasons, funnels

    with unit_of_work(ctx.sessions) as session:
        wave = session.get(Wave, wave_id) if wave_id else session.scalar(select(Wave).order_by(Wave.id.desc()))
        if wave is None:
            click.echo(f"error: no wave {wave_id or ''}".rstrip(), err=True)
            sys.exit(1)
        _print_funnel(wave, funnels(session, [wave.id]).get(wave.id, {"targeted": 0}))
        reasons = failure_reasons(session, wave.id)
    for reason, n in reasons:
        click.echo(f"  {n} x {reason}")


def _wave_command(ctx: Context, action, done) -> None:
    """Run a wave control in one unit of work; a WaveError becomes one line and exit 1."""
    from .db import current_actor
    from .study.waves import WaveError

    try:
        with unit_of_work(ctx.sessions) as session:
            result = action(session, current_actor())
    except WaveError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(done(result))


@waves.command("pause", help="Pause a wave: nothing automatic of it is sent (invitations, reminders, repeated "
                             "questions) and nothing expires until it is resumed; patients' own texts are still "
                             "answered. Audited.")
@click.argument("wave_id", type=COUNT)
@pass_ctx
def waves_pause(ctx: Context, wave_id: int) -> None:
    from .study.waves import pause_wave

    _wave_command(ctx, lambda s, who: pause_wave(s, wave_id, actor=who),
                  lambda held: f"wave {wave_id} paused: {held} open follow-up(s) held; `outreach waves resume "
                               f"{wave_id}` lets them go on")


@waves.command("resume", help="Resume a paused wave; each follow-up keeps the days it had left. Audited.")
@click.argument("wave_id", type=COUNT)
@pass_ctx
def waves_resume(ctx: Context, wave_id: int) -> None:
    from .study.waves import resume_wave

    _wave_command(ctx, lambda s, who: resume_wave(s, wave_id, actor=who),
                  lambda released: f"wave {wave_id} resumed: {released} follow-up(s) go on, their expiry moved by "
                                   "the time paused")


@waves.command("cancel", help="Cancel a wave: its unsent invitations and reminders are cancelled and follow-ups "
                              "never invited are closed; conversations under way go on. Asks first. Audited.")
@click.argument("wave_id", type=COUNT)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def waves_cancel(ctx: Context, wave_id: int, yes: bool) -> None:
    from .study.waves import cancel_wave

    if not yes and not click.confirm(f"cancel wave {wave_id}? its unsent invitations and reminders will not be sent"):
        click.echo("not cancelled")
        return
    _wave_command(ctx, lambda s, who: cancel_wave(s, wave_id, actor=who),
                  lambda c: f"wave {wave_id} cancelled: {c.texts} unsent text(s) cancelled, {c.never_invited} "
                            "follow-up(s) never invited closed; conversations under way go on")


@cli.command("send-due", short_help="Send every queued message that is due now (one pass, for cron).",
             help="Send every queued message that is due now (one pass, for cron); say how many are held for quiet "
                  "hours and when their window opens.")
@pass_ctx
def send_due_cmd(ctx: Context) -> None:
    from .config import check_sending
    from .messaging.gateway import make_gateway
    from .messaging.sender import Sender

    check_sending(ctx.settings)  # every missing Twilio setting at once
    sender = Sender(ctx.sessions, ctx.settings, make_gateway(ctx.settings, echo=click.echo))
    stats = sender.waiting(sender.send_due())
    click.echo(stats.describe(ctx.zone))


@cli.command("tick", short_help="Run the worker's minute duties once (reminders, expiry, late inbound).",
             help="The worker's minute duties once: reminders, expiry, and inbound texts whose request died "
                  "before applying them.")
@pass_ctx
def tick_cmd(ctx: Context) -> None:
    from .worker import every_minute

    click.echo(str(every_minute(ctx.sessions, ctx.settings)))


@cli.command("worker", help="Long-running sender: sends due messages, runs reminders and expiry every minute.")
@click.option("--once", is_flag=True, help="Do one round and exit.")
@pass_ctx
def worker_cmd(ctx: Context, once: bool) -> None:
    from .worker import run_worker

    run_worker(ctx.sessions, ctx.settings, echo=click.echo, once=once)


@cli.command("export", help="Write the linked, de-identified results for a statistics package, with a codebook.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "dta", "sav"]),
              help="Default: from the file's extension.")
@click.option("--timepoint", type=int, help="Only this time point.")
@click.option("--identified", is_flag=True, help="Add patient_id and discharge_date (coordinators; audited).")
@click.option("--reason", help="Why an identified export is needed (required with --identified).")
@pass_ctx
def export_cmd(ctx: Context, out: Path, fmt: str | None, timepoint: int | None, identified: bool,
               reason: str | None) -> None:
    from analysis.dataset import linked_dataset
    from analysis.export import ExportError, codebook_path, format_for, write

    if identified and not (reason and reason.strip()):
        raise click.UsageError("--identified needs --reason TEXT saying why identifiers are needed")
    _check_timepoint_option(ctx, timepoint)
    try:
        fmt = format_for(out, fmt)
    except ExportError as exc:
        raise click.UsageError(str(exc)) from None
    key = ctx.settings.export_key
    df = linked_dataset(ctx.engine, key, timepoint=timepoint, identified=identified)
    if identified:
        _write_identified(ctx, df, out, fmt, reason.strip(), timepoint)
    else:
        write(df, out, fmt, suppress_below=ctx.settings.suppress_below)
    click.echo(f"wrote {len(df)} rows to {out} ({fmt}{', identified' if identified else ', de-identified'}) "
               f"and the codebook to {codebook_path(out)}")
    if not identified:  # the alliance check-ins during treatment, de-identified the same way (issue 26)
        from analysis.checkins import write_companion

        companion, rows = write_companion(ctx.engine, key, out, fmt, suppress_below=ctx.settings.suppress_below)
        click.echo(f"wrote {rows} check-in rows to {companion} and the codebook to {codebook_path(companion)}")


def _write_identified(ctx: Context, df, out: Path, fmt: str, reason: str, timepoint: int | None) -> None:
    """An identified export, audited before anything is written (:func:`outreach.jobs.exports.write_identified`,
    the console's rule too): ``identified_export`` committed first, then the files written 0600 in a staging
    folder and moved into place in the transaction that records ``identified_export_written`` with their
    SHA-256; on failure ``identified_export_failed``, nothing left at ``out``, and the command exits 1."""
    from .db import current_actor
    from .jobs.exports import IdentifiedExportFailed, write_identified

    try:
        write_identified(ctx.sessions, df, out, fmt, reason=reason, timepoint=timepoint, actor=current_actor(),
                         suppress_below=ctx.settings.suppress_below)
    except IdentifiedExportFailed as exc:
        click.echo(f"error: the identified export could not be written ({exc.summary}); "
                   f"audit row {exc.export_id} records the attempt and its failure", err=True)
        sys.exit(1)


@cli.command("report", help="Write the statistical report (Markdown, HTML, stats.json, figures) to a folder.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--timepoint", type=int, help="Only this time point.")
@pass_ctx
def report_cmd(ctx: Context, out: Path, timepoint: int | None) -> None:
    from analysis.report import report_data, write_report

    _check_timepoint_option(ctx, timepoint)
    df, checkins = report_data(ctx.engine, timepoint=timepoint)  # no EXPORT_KEY: the report shows no pseudonyms
    payload = write_report(df, out, suppress_below=ctx.settings.suppress_below, timepoint=timepoint,
                           primary_timepoint=ctx.settings.primary_timepoint, checkins=checkins)
    click.echo(f"report on {len(df)} follow-ups written to {out}/: report.md, report.html (figures embedded), "
               f"stats.json and {len(payload['figures'])} figures")


@cli.command("backup", short_help="Copy the database to FILE while the service runs.",
             help="Copy the database to FILE, consistently, while the web app and the worker run: SQLite through its "
                  "online backup API, PostgreSQL with the server's own pg_dump (custom format; the server's major "
                  "version or newer). The file holds every patient's data: it is written 0600.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def backup_cmd(ctx: Context, out: Path) -> None:
    from .ops.backup import BackupError, backup

    ctx.engine  # there, answering, with our schema
    try:
        done = backup(ctx.settings.database_url, out)
    except BackupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(done.describe("backed up", ctx.settings.database_url))


@cli.command("restore", short_help="Restore a backup FILE into an empty database.",
             help="Restore FILE (made by `outreach backup`) into DATABASE_URL, which must be empty (a new SQLite file, "
                  "or a new PostgreSQL database: pg_restore in one transaction). Then `outreach db upgrade` brings a "
                  "backup of an older version to this one's schema.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def restore_cmd(ctx: Context, file: Path) -> None:
    from .ops.backup import BackupError, restore

    try:
        done = restore(file, ctx.settings.database_url)
    except BackupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(done.describe("restored", ctx.settings.database_url))


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that Python's own flush at exit does not hit the closed pipe again."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (a test runner's stream)
        pass


def main() -> None:
    from .logs import configure_logging

    configure_logging()
    try:
        try:
            cli(prog_name="outreach")
        finally:  # what is still buffered goes now, while a closed pipe can still be met quietly
            sys.stdout.flush()
            # The command is done.  As it exits, the interpreter's last garbage collection would walk every object
            # still alive and free the cycles among them (after a 100,000-row import: its caches of cells and phones,
            # 0.5 s) for memory the operating system takes back anyway; frozen, they are left to it.  (``main`` is
            # the process's entry point only: tests and the web app call ``cli`` or the services.)
            gc.freeze()
    except BrokenPipeError:  # the reader stopped reading (`| head`): end quietly, as Unix tools do
        _quiet_stdout()
        sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
