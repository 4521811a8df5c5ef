"""Settings, read from the environment only.

Every setting has a documented default except secrets, which have none:
code that needs a secret calls :func:`require` and the command fails naming
the variable.  The settings table of docs/operations.md is generated from ``SETTINGS``;
every non-secret setting is parsed once, when the settings are read (``TYPED``).
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


class MissingSettings(ConfigError):
    """Settings that are not set, all of them at once, each with what it is for.

    An entry of ``names`` is a variable, or a tuple of variables of which one is enough."""

    def __init__(self, names: list[str | tuple[str, ...]], needed_by: str | None = None):
        self.names = names
        for_what = f" ({needed_by})" if needed_by else ""

        def label(entry) -> str:
            return entry if isinstance(entry, str) else " or ".join(entry)

        def purpose(entry) -> str:
            first = entry if isinstance(entry, str) else entry[0]
            return SETTINGS.get(first, (None, ""))[1].rstrip(".")

        if len(names) == 1:
            message = (f"{label(names[0])} is not set{for_what}; export it in the environment "
                       f"({purpose(names[0])})")
        else:
            message = (f"{len(names)} settings are not set{for_what}; export them in the environment:\n"
                       + "\n".join(f"  {label(n)}: {purpose(n)}" for n in names))
        super().__init__(message)


# name -> (default, description).  ``None`` as default marks a secret or an
# optional value with no default.
SETTINGS: dict[str, tuple[str | None, str]] = {
    "DATABASE_URL": ("sqlite:///outreach.db", "SQLAlchemy database URL (PostgreSQL in production)."),
    "DEFAULT_REGION": ("CA", "Region used to parse phone numbers written without a country code."),
    "DEFAULT_TIMEZONE": ("America/Toronto", "Time zone of patients whose row and phone number give none."),
    "ORG_NAME": ("Outreach Study", "Sender name used in every text message."),
    "ALLIANCE_INSTRUMENT": ("alliance6", "Instrument definition used to score discharge ratings."),
    "FOLLOWUP_DAYS": ("30,90,180,365", "Follow-up time points, in days after discharge."),
    "EARLIEST_DATE": ("2000-01-01", "The earliest discharge or admission date an import accepts: an earlier one is a "
                                    "placeholder (1899-12-30, 1900-01-01) or a typing error, and is refused."),
    "WINDOW_DAYS": ("14", "Days after a time point during which a patient can still be invited."),
    "EXPIRE_DAYS": ("7", "Days after the invitation after which an unfinished follow-up expires."),
    "REMINDER_HOURS": ("48,96", "Hours after an unanswered invitation at which reminders go out."),
    "STALL_HOURS": ("24", "Hours of silence mid-survey after which the current question is sent once more."),
    "SEND_WINDOW": ("Mon-Fri 09:00-20:00; Sat-Sun 10:00-18:00",
                    "When invitations and reminders may reach a patient, in the patient's own time zone."),
    "SEND_RATE_PER_SECOND": ("1", "Texts a second per sender (messaging service or number), shared by every "
                                  "worker on every host through the database (1 = a long code's limit; 0 = off)."),
    "SEND_CLAIM_TIMEOUT": ("60", "Seconds after which a message claimed by a dead worker is recovered."),
    "SMS_BACKEND": ("twilio", "twilio (real) or simulator (records and prints; used by the demo)."),
    "TWILIO_ACCOUNT_SID": (None, "Twilio account SID (needed by the twilio backend)."),
    "TWILIO_MESSAGING_SERVICE_SID": (None, "Messaging service to send from (or TWILIO_FROM_NUMBER)."),
    "TWILIO_FROM_NUMBER": (None, "Sender number when no messaging service is used."),
    "TWILIO_API_BASE_URL": (None, "Override of the Twilio API host (loopback testing): https, or http to a "
                                  "loopback address only."),
    "EXPORT_KEY": (None, "Key of the HMAC that turns patient ids into export pseudonyms (secret, at least 32 "
                         "characters: python -c \"import secrets; print(secrets.token_hex(32))\")."),
    "SUPPRESS_BELOW": ("5", "Counts from 1 to this minus one are shown as '<N' in reports."),
    "PRIMARY_TIMEPOINT": ("30", "The report's pre-specified primary time point, in days after discharge (one of "
                                "FOLLOWUP_DAYS): its primary and secondary analyses use the answers of that time "
                                "point only."),
    "HELP_CONTACT": (None, "Phone number given to patients who text HELP (required by the web app)."),
    "CRISIS_LINE": ("988", "Crisis line named in the safety reply (call or text)."),
    "EMERGENCY_NUMBER": ("911", "Emergency number named in the safety reply."),
    "ALERT_SMS_TO": (None, "Phone numbers of the coordinators on call, comma-separated: each crisis alert is "
                           "texted to them at once (its number and time only, nothing about the patient)."),
    "ALERT_ESCALATE_MINUTES": ("60", "Minutes after which a crisis alert nobody has taken is texted to ALERT_ESCALATE_TO "
                                     "(once; a failed text to the coordinators on call is escalated at once)."),
    "ALERT_ESCALATE_TO": (None, "Phone numbers texted when a crisis alert is not taken in ALERT_ESCALATE_MINUTES, "
                                "comma-separated (its number and time only, nothing about the patient)."),
    "PUBLIC_BASE_URL": (None, "Public https base URL Twilio calls (signature check behind a proxy, callbacks)."),
    "WEB_CONCURRENCY": ("5", "gunicorn worker processes of the web app (about 2 per core + 1)."),
    "WEB_THREADS": ("4", "Threads per web worker; each holds at most one database connection."),
    "TWILIO_AUTH_TOKEN": (None, "Twilio auth token: verifies webhook signatures and authenticates API calls (secret)."),
    "SECRET_KEY": (None, "Signs the console's session cookies (secret; without it the console is off, the "
                         "webhooks still run)."),
    "CONSOLE_INSECURE_COOKIES": ("0", "1 lets session cookies travel over plain http (local use only)."),
    "SESSION_IDLE_MINUTES": ("30", "Minutes without activity after which a console user is signed out."),
    "REQUIRE_2FA_FOR_ADMINS": ("0", "1 makes administrators set up an authenticator-app code before anything else."),
    "CONSOLE_TIMEZONE": (None, "Time zone the console and the command line show times in, with its abbreviation "
                               "(default: DEFAULT_TIMEZONE)."),
    "ALERT_RESPONSE_HOURS": ("12", "Hours after which an open crisis alert is marked overdue in the console."),
    "INBOX_RESPONSE_HOURS": ("24", "Hours within which a patient's personal text in the inbox should be read; older "
                                   "ones are marked overdue."),
    "CARE_DIGEST_TO": (None, "The optional weekly digest to each care team by text, off when unset: "
                             "'TEAM=NUMBER,NUMBER; TEAM=NUMBER' (a care team's name, its phones). Each Monday from "
                             "INBOX_DIGEST_AT (CONSOLE_TIMEZONE) the team's counts only: patients in treatment, "
                             "check-ins and alliance alerts of the week, alerts open; nothing about a patient."),
    "INBOX_DIGEST_AT": ("09:00", "Time of day (CONSOLE_TIMEZONE) at which the coordinators on call get the inbox's "
                                 "counts by text (waiting, overdue, open alerts; never content), when anything waits."),
    "TRUSTED_PROXIES": ("0", "Reverse proxies in front of the web app whose X-Forwarded-For/-Proto to trust (the "
                              "console's per-address sign-in limit and the audit's address need the client's)."),
    "CONSOLE_REFRESH_SECONDS": ("30", "How often the alerts queue refreshes its list in the browser."),
    "DB_TIMEOUT_SECONDS": ("2", "Seconds the web app waits for the database (connecting, or a free pooled connection; "
                                "a statement 2.5 times as long) before it spools an incoming text to local disk "
                                "instead."),
    "PORT": ("8000", "Port the web app (the Procfile's gunicorn) listens on, on every interface of the host "
                     "(0.0.0.0); put it behind the https proxy. `outreach serve` has its own --port (127.0.0.1)."),
    "LOG_LEVEL": ("INFO", "How much the processes log to stderr: DEBUG, INFO, WARNING, ERROR or CRITICAL."),
    "SPOOL_DIR": (None, "Folder on a persistent local disk where texts and status callbacks received while the "
                        "database is unreachable wait (default: the project's instance/spool folder)."),
    "JOBS_DIR": (None, "Folder for the console's uploaded files and job results (imports, exports, reports), "
                       "mode 0600 (default: the project's instance/jobs folder)."),
    "JOB_RESULT_DAYS": ("7", "Days after which a job's result files (exports, reports, rejected rows) are deleted."),
    "MAX_UPLOAD_MB": ("50", "Largest discharge file the console accepts, in megabytes."),
    "OIDC_ISSUER": (None, "The institution's OpenID Connect issuer URL: with OIDC_CLIENT_ID and OIDC_CLIENT_SECRET "
                          "the sign-in page offers single sign-on."),
    "OIDC_CLIENT_ID": (None, "This console's client id at the identity provider."),
    "OIDC_CLIENT_SECRET": (None, "This console's client secret at the identity provider (secret)."),
    "PASSWORD_LOGIN": ("1", "0 turns password sign-in off (single sign-on only; needs the OIDC settings)."),
    "API_TOKEN_DAYS": ("90", "Days a researcher's personal access token for the data API stays valid."),
    "METRICS_TOKEN": (None, "Bearer token Prometheus sends for GET /metrics on the web app's port (secret, at least "
                            "32 characters; unset and no METRICS_PORT: /metrics is off)."),
    "METRICS_PORT": (None, "Port on 127.0.0.1 where the Procfile's gunicorn serves /metrics without a token, for a "
                           "Prometheus (or agent) on the same host."),
    "LOG_FORMAT": ("text", "text (one readable line per record) or json (one JSON object per line, with the "
                           "request id the webhook, the worker and the console share), masked either way."),
    "RETAIN_MESSAGE_BODIES_DAYS": ("365", "Days the words of texts and of free-text answers are kept after the "
                                          "follow-up they belong to has ended (a text outside any follow-up: after "
                                          "it was sent or received); then erased, coded answers kept."),
    "RETAIN_PHONES_DAYS_AFTER_LAST_CONTACT": ("365", "Days a participant's phone number is kept once nothing is "
                                                     "left to send them (no follow-up open, every time point of "
                                                     "FOLLOWUP_DAYS past for their latest discharge), counted from "
                                                     "the later of their last text and that last time point; then "
                                                     "erased, with the numbers on their texts. A text of no "
                                                     "participant (an unknown number) loses its number this many "
                                                     "days after it, once no person still has to answer it."),
    "RETAIN_AUDIT_DAYS": ("2555", "Days audit rows are kept (7 years by default); at least as long as the two "
                                  "rules above, so the audit outlives what it records."),
    "RETENTION_RUN_AT": ("03:00", "Time of day (CONSOLE_TIMEZONE) from which the worker applies the retention rules, "
                                  "once a day, in small batches."),
    "ALLIANCE_CHECKIN_DAYS": ("7", "Days between two alliance check-ins during a stay, counted from admission."),
    "ALLIANCE_DISCHARGE_DAYS": ("14", "When a discharge file gives a stay in treatment no rating, its last check-in "
                                      "with a mean taken in these many days up to the discharge becomes the stay's "
                                      "discharge alliance; an older one, or one with too few statements answered for "
                                      "a mean, is not used (the stay then has none)."),
    "KIOSK_IDLE_SECONDS": ("120", "Seconds without a touch after which the tablet's check-in page locks, discarding "
                                  "the unfinished check-in: a staff member signs in and hands it over again."),
}


# -- typed values, parsed and checked once when a process reads its settings -----------------------------------
# name -> (parser, what a good value looks like).  A parser takes the text (the default when unset) and returns
# the typed value or raises ValueError; load_settings names every setting that does not parse, all at once.
# A setting absent here is plain text (secrets are checked where they are needed: Settings.require).

class _Unreadable(ValueError):
    """A parser's own words on what is wrong (shown); any other ValueError is said only as 'cannot be read'."""


def _whole(minimum: int):
    def parse(text: str) -> int:
        value = int(text.strip())
        if value < minimum:
            raise ValueError
        return value
    return parse


def _number(minimum: float, *, above: bool = False):
    def parse(text: str) -> float:
        value = float(text.strip())
        if value != value or value in (float("inf"), float("-inf")) or value < minimum or (above and value == minimum):
            raise ValueError
        return value
    return parse


def _list(item):
    def parse(text: str) -> tuple:
        values = tuple(item(x) for x in text.split(",") if x.strip())
        if not values:
            raise ValueError
        return values
    return parse


def _date(text: str):
    import datetime as dt

    return dt.date.fromisoformat(text.strip())


def _zone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError from None
    return text


def _optional_zone(text: str | None) -> str | None:
    return _zone(text) if text else None


def _region(text: str) -> str:
    import phonenumbers

    if text.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError
    return text.upper()


def _flag(text: str) -> bool:
    if text.strip() not in ("0", "1"):
        raise ValueError
    return text.strip() == "1"


def _choice(*choices: str):
    def parse(text: str) -> str:
        if text.strip().lower() not in choices:
            raise ValueError
        return text.strip().lower()
    return parse


def _window(text: str):
    from .quiet_hours import parse_window

    try:
        return parse_window(text)
    except ConfigError as exc:
        raise _Unreadable(str(exc).removeprefix("SEND_WINDOW: ")) from None


def _clock_time(text: str):
    import datetime as dt

    try:
        hours, minutes = text.strip().split(":")
        return dt.time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise ValueError from None


def _port(text: str) -> int:
    value = _whole(1)(text)
    if value > 65535:
        raise ValueError
    return value


def _base_url(text: str | None) -> str | None:
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError
    return text


TYPED: dict[str, tuple] = {
    "DEFAULT_REGION": (_region, "a two-letter region code such as CA or US"),
    "DEFAULT_TIMEZONE": (_zone, "an IANA time zone such as America/Toronto"),
    "FOLLOWUP_DAYS": (_list(_whole(1)), "whole numbers of days separated by commas, such as 30,90,180,365"),
    "WINDOW_DAYS": (_whole(1), "a whole number of days, at least 1"),
    "EARLIEST_DATE": (_date, "a date written YYYY-MM-DD, such as 2000-01-01"),
    "EXPIRE_DAYS": (_whole(1), "a whole number of days, at least 1"),
    "REMINDER_HOURS": (lambda text: tuple(_number(0, above=True)(x) for x in text.split(",") if x.strip()),
                       "hours above 0 separated by commas, such as 48,96"),
    "STALL_HOURS": (_number(0, above=True), "a number of hours above 0, such as 24"),
    "SEND_WINDOW": (_window, "days and hours such as 'Mon-Fri 09:00-20:00; Sat-Sun 10:00-18:00'"),
    "SEND_RATE_PER_SECOND": (_number(0), "a number of texts a second, 0 or more (0 = no limit), such as 1"),
    "SEND_CLAIM_TIMEOUT": (_number(0, above=True), "a number of seconds above 0, such as 60"),
    "SMS_BACKEND": (_choice("twilio", "simulator"), "twilio or simulator"),
    "SUPPRESS_BELOW": (_whole(1), "a whole number, at least 1, such as 5"),
    "PRIMARY_TIMEPOINT": (_whole(1), "a whole number of days, one of FOLLOWUP_DAYS, such as 30"),
    "PUBLIC_BASE_URL": (_base_url, "an https URL such as https://outreach.example.org"),
    "WEB_CONCURRENCY": (_whole(1), "a whole number of processes, at least 1"),
    "WEB_THREADS": (_whole(1), "a whole number of threads, at least 1"),
    "CONSOLE_INSECURE_COOKIES": (_flag, "0 or 1"),
    "SESSION_IDLE_MINUTES": (_whole(1), "a whole number of minutes, at least 1"),
    "REQUIRE_2FA_FOR_ADMINS": (_flag, "0 or 1"),
    "CONSOLE_TIMEZONE": (_optional_zone, "an IANA time zone such as America/Toronto"),
    "ALERT_RESPONSE_HOURS": (_number(0, above=True), "a number of hours above 0, such as 12"),
    "TRUSTED_PROXIES": (_whole(0), "a whole number of proxies, 0 or more"),
    "CONSOLE_REFRESH_SECONDS": (_whole(1), "a whole number of seconds, at least 1"),
    "DB_TIMEOUT_SECONDS": (_number(0, above=True), "a number of seconds above 0, such as 2"),
    "PORT": (_port, "a port number from 1 to 65535, such as 8000"),
    "LOG_LEVEL": (_choice("debug", "info", "warning", "error", "critical"), "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    "JOB_RESULT_DAYS": (_whole(1), "a whole number of days, at least 1"),
    "ALERT_ESCALATE_MINUTES": (_whole(1), "a whole number of minutes, at least 1, such as 60"),
    "INBOX_RESPONSE_HOURS": (_number(0, above=True), "a number of hours above 0, such as 24"),
    "INBOX_DIGEST_AT": (_clock_time, "a time of day written HH:MM, such as 09:00"),
    "MAX_UPLOAD_MB": (_number(0, above=True), "a number of megabytes above 0, such as 50"),
    "PASSWORD_LOGIN": (_flag, "0 or 1"),
    "API_TOKEN_DAYS": (_whole(1), "a whole number of days, at least 1"),
    "METRICS_PORT": (lambda text: _port(text) if text else None, "a port number from 1 to 65535, such as 9464"),
    "LOG_FORMAT": (_choice("text", "json"), "text or json"),
    "RETAIN_MESSAGE_BODIES_DAYS": (_whole(1), "a whole number of days, at least 1, such as 365"),
    "RETAIN_PHONES_DAYS_AFTER_LAST_CONTACT": (_whole(1), "a whole number of days, at least 1, such as 365"),
    "RETAIN_AUDIT_DAYS": (_whole(1), "a whole number of days, at least 1, such as 2555"),
    "RETENTION_RUN_AT": (_clock_time, "a time of day written HH:MM, such as 03:00"),
    "ALLIANCE_CHECKIN_DAYS": (_whole(1), "a whole number of days, at least 1, such as 7"),
    "ALLIANCE_DISCHARGE_DAYS": (_whole(0), "a whole number of days, 0 or more (0: the discharge day only), such as 14"),
    "KIOSK_IDLE_SECONDS": (_whole(10), "a whole number of seconds, at least 10, such as 120"),
}


# Never shown by ``repr(settings)``; the database URL is shown without its password.
SECRETS = ("TWILIO_AUTH_TOKEN", "EXPORT_KEY", "SECRET_KEY", "OIDC_CLIENT_SECRET", "METRICS_TOKEN")
EXPORT_KEY_MIN_LENGTH = 32
METRICS_TOKEN_MIN_LENGTH = 32
MAKE_A_KEY = 'python -c "import secrets; print(secrets.token_hex(32))"'


def hide_password(url: str) -> str:
    """A database URL as it may be shown: its password replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can read: hide whatever sits between ``user:`` and ``@``
        return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


@dataclass(frozen=True)
class Settings:
    """The service's settings, read once: every setting of :data:`TYPED` is parsed when the object is made (a
    malformed value stops the process at start, naming it and what it should look like) and read as a typed
    attribute in lower case (``settings.send_rate_per_second``); text settings through :meth:`get`,
    :meth:`optional` and :meth:`require`."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    typed: Mapping[str, object] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values, problems = {}, []
        for name, (parse, looks_like) in TYPED.items():
            raw = self.optional(name)
            try:
                values[name] = parse(raw)
            except (ValueError, TypeError) as exc:
                detail = f" ({exc})" if isinstance(exc, _Unreadable) and not str(exc).startswith("cannot read") else ""
                problems.append(f"{name}: {raw!r} cannot be read{detail}; it should be {looks_like}")
        try:
            values["DATABASE_URL"] = _database_url(self.get("DATABASE_URL"))
        except ConfigError as exc:
            problems.append(str(exc))
        try:
            values["ALERT_SMS_TO"] = _on_call_numbers(self.optional("ALERT_SMS_TO"), values.get("DEFAULT_REGION", "CA"))
        except ConfigError as exc:
            problems.append(str(exc))
        try:
            values["ALERT_ESCALATE_TO"] = _on_call_numbers(self.optional("ALERT_ESCALATE_TO"),
                                                           values.get("DEFAULT_REGION", "CA"), "ALERT_ESCALATE_TO")
        except ConfigError as exc:
            problems.append(str(exc))
        try:
            values["CARE_DIGEST_TO"] = _care_digest_to(self.optional("CARE_DIGEST_TO"),
                                                       values.get("DEFAULT_REGION", "CA"))
        except ConfigError as exc:
            problems.append(str(exc))
        try:
            values["TWILIO_API_BASE_URL"] = _api_base_url(self.optional("TWILIO_API_BASE_URL"))
        except ConfigError as exc:
            problems.append(str(exc))
        audit_days = values.get("RETAIN_AUDIT_DAYS")
        for rule in ("RETAIN_MESSAGE_BODIES_DAYS", "RETAIN_PHONES_DAYS_AFTER_LAST_CONTACT"):
            if audit_days is not None and values.get(rule) is not None and audit_days < values[rule]:
                problems.append(f"RETAIN_AUDIT_DAYS ({audit_days}) is shorter than {rule} ({values[rule]}): the "
                                "audit must outlive what it records")
        primary, days = values.get("PRIMARY_TIMEPOINT"), values.get("FOLLOWUP_DAYS")
        if primary is not None and days and primary not in days:
            problems.append(f"PRIMARY_TIMEPOINT: {primary} is not one of FOLLOWUP_DAYS "
                            f"({', '.join(str(d) for d in days)}); the report's primary time point must be followed up")
        if problems:
            raise ConfigError(problems[0] if len(problems) == 1 else
                              f"{len(problems)} settings cannot be read:\n" + "\n".join(f"  {p}" for p in problems))
        object.__setattr__(self, "typed", values)

    def __getattr__(self, name: str):
        typed = self.__dict__.get("typed") or {}
        if name.upper() in typed and name == name.lower():
            return typed[name.upper()]
        raise AttributeError(name)

    def __repr__(self) -> str:
        """The settings this service reads that are set, secrets masked (never the whole environment)."""
        from .logs import mask_text

        shown = []
        for name in SETTINGS:
            value = self.env.get(name)
            if value in (None, ""):
                continue
            if name in SECRETS:
                value = "***"
            elif name == "DATABASE_URL":
                value = hide_password(value)
            else:
                value = mask_text(value)  # ALERT_SMS_TO, ALERT_ESCALATE_TO: the coordinators' own phones
            shown.append(f"{name}={value!r}")
        return f"Settings({', '.join(shown)})"

    __str__ = __repr__

    def get(self, name: str) -> str:
        value = self.env.get(name)
        if value not in (None, ""):
            return value
        default = SETTINGS.get(name, (None, ""))[0]
        if default is None:
            raise ConfigError(f"{name} is not set")
        return default

    def optional(self, name: str) -> str | None:
        value = self.env.get(name)
        return value if value not in (None, "") else SETTINGS.get(name, (None, ""))[0]

    def require(self, name: str) -> str:
        """A secret or mandatory value: no default, a clear error when absent."""
        value = self.env.get(name)
        if value in (None, ""):
            raise MissingSettings([name])
        return value

    def check_required(self, names: list[str | tuple[str, ...]], needed_by: str | None = None) -> None:
        """Raise :class:`MissingSettings` naming every one of ``names`` that is not set (a tuple: one of
        them is enough), so that a deployment learns them all in one run, not one per run."""
        missing = [n for n in names
                   if not any(self.env.get(v) not in (None, "") for v in ((n,) if isinstance(n, str) else n))]
        if missing:
            raise MissingSettings(missing, needed_by)

    @property
    def coordinator_zone(self) -> ZoneInfo:
        """The zone every time shown to coordinators is in: ``CONSOLE_TIMEZONE``, else ``DEFAULT_TIMEZONE``."""
        return ZoneInfo(self.console_timezone or self.default_timezone)

    @property
    def database_url(self) -> str:
        return self.typed["DATABASE_URL"]

    @property
    def org_name(self) -> str:
        return self.get("ORG_NAME")

    @property
    def export_key(self) -> bytes:
        """``EXPORT_KEY`` as bytes; refused when missing or shorter than 32 characters (a short key lets
        anyone who knows the patient ids recompute the pseudonyms by trying keys)."""
        key = self.require("EXPORT_KEY")
        if len(key) < EXPORT_KEY_MIN_LENGTH:
            raise ConfigError(f"EXPORT_KEY is too short ({len(key)} characters; at least {EXPORT_KEY_MIN_LENGTH} "
                              f"are needed); make one with: {MAKE_A_KEY}")
        return key.encode("utf-8")



def _api_base_url(value: str | None) -> str | None:
    """``TWILIO_API_BASE_URL`` (None when unset): https, or plain http to a loopback address only
    (127.x, ::1, localhost), so the auth token never crosses a network unencrypted."""
    if not value:
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        parts, host = None, None
    if parts is None or not host or parts.scheme not in ("https", "http"):
        raise ConfigError(f"TWILIO_API_BASE_URL must be an https URL such as https://api.twilio.com, "
                          f"not {value!r}")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(f"TWILIO_API_BASE_URL must use https (plain http is allowed for a loopback "
                          f"address only: 127.x, ::1 or localhost), not {value!r}")
    return value.rstrip("/")


def _database_url(value: str) -> str:
    """``DATABASE_URL`` when SQLAlchemy can read it and its driver is installed; else a sentence naming what is
    wrong, the password masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = hide_password(value)
    example = "postgresql+psycopg://user:password@host:5432/outreach or sqlite:///outreach.db"
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL: {shown!r} cannot be read as a database URL; it should look like "
                          f"{example}") from None
    try:
        url.get_dialect().import_dbapi()
    except NoSuchModuleError:
        raise ConfigError(f"DATABASE_URL: {shown!r} names a database SQLAlchemy does not know "
                          f"({url.drivername!r}); it should look like {example}") from None
    except ImportError as exc:
        raise ConfigError(f"DATABASE_URL: {shown!r} needs the database driver {exc.name or url.drivername!r}, which "
                          f"is not installed; install it, or use postgresql+psycopg (installed with outreach)") from None
    return value


def _on_call_numbers(value: str | None, region: str, name: str = "ALERT_SMS_TO") -> tuple[str, ...]:
    """``ALERT_SMS_TO`` (or ``ALERT_ESCALATE_TO``) in E.164 (empty when unset); an entry that cannot be read is
    named by its position and, masked, as written."""
    from .logs import mask_text
    from .phones import PhoneError, parse_phone

    entries = [raw.strip() for raw in (value or "").split(",")]
    numbers = []
    for position, raw in enumerate(entries, start=1):
        if not raw:
            continue
        try:
            numbers.append(parse_phone(raw, region))
        except PhoneError as exc:
            reason = str(exc).split(" (", 1)[0]  # the entry is named below, as written
            raise ConfigError(f"{name}: a number {reason}: entry {position} of {len(entries)}, "
                              f"{mask_text(raw)!r} (numbers are separated by commas)") from None
    return tuple(numbers)


def _care_digest_to(value: str | None, region: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``CARE_DIGEST_TO``: ((team name, its numbers in E.164), ...), empty when unset (the digest is off)."""
    teams = []
    for position, entry in enumerate((value or "").split(";"), start=1):
        if not entry.strip():
            continue
        name, sep, numbers = entry.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"CARE_DIGEST_TO: entry {position} is not TEAM=NUMBER[,NUMBER] (teams are separated "
                              "by semicolons)")
        parsed = _on_call_numbers(numbers, region, f"CARE_DIGEST_TO ({name.strip()})")
        if not parsed:
            raise ConfigError(f"CARE_DIGEST_TO: the team {name.strip()!r} has no number")
        teams.append((name.strip(), parsed))
    return tuple(teams)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# What each part of the service cannot run without (a tuple: one of them is enough).
WEB_APP_NEEDS: list[str | tuple[str, ...]] = ["TWILIO_AUTH_TOKEN", "HELP_CONTACT"]
TWILIO_NEEDS: list[str | tuple[str, ...]] = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                                             ("TWILIO_MESSAGING_SERVICE_SID", "TWILIO_FROM_NUMBER")]


def check_sending(settings: "Settings") -> None:
    """Every setting the SMS backend needs, named all at once when some are missing."""
    if settings.sms_backend == "twilio":
        settings.check_required(TWILIO_NEEDS, "needed to send through Twilio")


def local_time(moment, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored time (naive UTC) as coordinators read it: in ``zone``, with the zone's abbreviation."""
    import datetime as dt

    if moment is None:
        return "-"
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(zone).strftime(f"{fmt} %Z")


def load_settings(overrides: Mapping[str, str] | None = None) -> Settings:
    env = dict(os.environ)
    if overrides:
        env.update({k: str(v) for k, v in overrides.items()})
    return Settings(env=env)
