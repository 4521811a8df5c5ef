"""Single sign-on through the institution's OpenID Connect provider (issue 22).

When ``OIDC_ISSUER``, ``OIDC_CLIENT_ID`` and ``OIDC_CLIENT_SECRET`` are set, the sign-in page offers the
provider: the authorization code flow with PKCE (S256), through authlib's Flask client.  The provider's
discovery document (``<issuer>/.well-known/openid-configuration``) is read on the first sign-in.  The ID
token is checked before anyone is signed in: its signature (the provider's published keys), issuer,
audience (this console's client id), nonce (the one this browser's sign-in sent), expiry; the state
(``state`` ties the answer to the browser that started the sign-in; authlib keeps it, with the nonce and
the PKCE verifier, in the signed session cookie and uses it once).  Then the e-mail address: not one
the provider says is unverified, and only an account an administrator added with it signs in, with its
console role (:func:`outreach.staff.accounts.sso_sign_in`: the same limits, lock, authenticator code and
audit as a password).  Every refusal is a page in words; nothing is signed in.
"""
from __future__ import annotations

import ipaddress
import logging
import re
from urllib.parse import urlsplit

import requests
from authlib.integrations.base_client import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, abort, current_app, redirect, request, session, url_for
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, JoseError

from outreach.config import ConfigError, Settings
from outreach.staff.accounts import AccountError, TotpRejected, TotpRequired, sso_sign_in

from .auth_views import begin_session, render_sign_in
from .blueprint import address, bp, settings, uow
from .security import now, requires

log = logging.getLogger("outreach.console.sso")

SETTINGS = ("OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET")
SCOPE = "openid email"
TIMEOUT_SECONDS = 10  # each call to the provider (discovery, keys, token)
LEEWAY_SECONDS = 60  # clock difference allowed for the ID token's times
CODE_STEP_SECONDS = 300  # time to type the authenticator code after the provider signed the person in
CALLBACK_PATH = "/console/sign-in/sso/callback"

# What the person reads when the provider's answer is refused (nobody is signed in).
STATE_REFUSED = ("This sign-in could not be completed: it was not started from this browser, it was already "
                 "used, or it took too long. Nobody was signed in; start again with the button below.")
REFUSED = "Your institution's sign-in answered, but the console refused its answer: {why}. Nobody was signed in."
WHY = {
    "aud": "it was issued for another application, not this console (check OIDC_CLIENT_ID)",
    "azp": "it was issued for another application, not this console (check OIDC_CLIENT_ID)",
    "iss": "it came from another identity provider than the one this console trusts (OIDC_ISSUER)",
    "nonce": "it does not belong to this sign-in (its nonce is not the one sent), so it may have been replayed",
    "exp": "it has expired (check that this server's clock is right)",
    "iat": "it is dated in the future (check that this server's clock is right)",
    "nbf": "it is not valid yet (check that this server's clock is right)",
}
PROVIDER_SAID_NO = ("Your institution's sign-in did not sign you in ({error}). Nobody was signed in; you can start "
                    "again.")
CODE_REFUSED = ("Your institution's sign-in would not complete this sign-in ({error}): the code may have been used "
                "already or have expired, or the console's client secret may be wrong. Nobody was signed in; start "
                "again, and if it goes on, tell the study's administrator.")
OTHER_ISSUER = ("The identity provider's discovery document names another issuer ({found}) than the one this console "
                "trusts (OIDC_ISSUER, {issuer}), so it is not used. Nobody was signed in; tell the study's "
                "administrator.")
UNREACHABLE = ("Your institution's sign-in could not be reached just now ({where}). Nobody was signed in; try again "
               "in a moment, and if it goes on, tell the study's administrator.")
UNVERIFIED = ("Your institution's sign-in says the e-mail address {email} is not verified, so it cannot be used to "
              "sign in to the console. Ask your institution's IT service to verify it.")
NO_EMAIL = ("Your institution's sign-in did not give an e-mail address, so the console cannot tell which account is "
            "yours. Ask the study's administrator to check that the provider releases the 'email' claim.")


class SsoFailure(Exception):
    """The provider's answer cannot sign anyone in; the message is shown as it is."""


# --- settings, checked once when the console starts -------------------------------------------------------

def sso_settings(s: Settings) -> tuple[str, str, str] | None:
    """(issuer, client id, client secret) when all three are set, else None."""
    values = tuple((s.optional(name) or "").strip() for name in SETTINGS)
    return values if all(values) else None  # type: ignore[return-value]


def check_sign_in_settings(s: Settings) -> None:
    """Raise :class:`ConfigError`, in words, when nobody could sign in or the issuer cannot be trusted."""
    missing = [name for name in SETTINGS if not (s.optional(name) or "").strip()]
    if not s.password_login and missing:
        raise ConfigError(
            f"PASSWORD_LOGIN=0 turns password sign-in off, but single sign-on is not set up "
            f"({', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set): nobody could sign in to the "
            f"console. Set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET, or PASSWORD_LOGIN=1.")
    issuer = (s.optional("OIDC_ISSUER") or "").strip()
    if issuer and not _trusted_issuer_url(issuer):
        raise ConfigError(f"OIDC_ISSUER must be an https URL such as https://login.example.org/realms/staff "
                          f"(plain http only on this machine's loopback), not {issuer!r}")


def _trusted_issuer_url(issuer: str) -> bool:
    try:
        parts = urlsplit(issuer)
    except ValueError:
        return False
    if not parts.hostname or parts.query or parts.fragment:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def init_sso(app: Flask, s: Settings) -> None:
    """Check the sign-in settings (raises :class:`ConfigError`) and register the provider's client."""
    check_sign_in_settings(s)
    configured = sso_settings(s)
    app.extensions["console"]["sso"] = None
    if configured is None:
        missing = [name for name in SETTINGS if not (s.optional(name) or "").strip()]
        if len(missing) < len(SETTINGS):
            log.warning("single sign-on is off: %s not set", ", ".join(missing))
        return
    issuer, client_id, client_secret = configured
    # authlib logs the PKCE verifier (and, as a server, tokens) at DEBUG: never below INFO, whatever LOG_LEVEL says
    authlib_log = logging.getLogger("authlib")
    if authlib_log.level < logging.INFO:  # NOTSET (0) would follow the root logger down to DEBUG
        authlib_log.setLevel(logging.INFO)
    oauth = OAuth(app)
    client = oauth.register(
        "institution", client_id=client_id, client_secret=client_secret,
        server_metadata_url=issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256", "default_timeout": TIMEOUT_SECONDS})
    app.extensions["console"]["sso"] = {"client": client, "issuer": issuer}


def _sso() -> dict:
    sso = current_app.extensions["console"].get("sso")
    if sso is None:
        abort(404)  # single sign-on is not set up
    return sso


# --- the flow ------------------------------------------------------------------------------------------------

@bp.get("/sign-in/sso")
@requires("public")
def sso_start():
    """Send the browser to the provider, with a new state, nonce and PKCE challenge."""
    sso = _sso()
    try:
        _metadata(sso)
        return sso["client"].authorize_redirect(url_for("console.sso_callback", _external=True))
    except SsoFailure as exc:
        return render_sign_in(error=str(exc), status=502)


@bp.get("/sign-in/sso/callback")
@requires("public")
def sso_callback():
    """The provider sends the browser back here with a code; check everything, then sign in."""
    sso = _sso()
    try:
        email = _verified_email(sso)
    except SsoFailure as exc:
        log.warning("single sign-on refused: %s", exc)
        return render_sign_in(error=str(exc), status=400)
    try:
        with uow() as s:
            user = sso_sign_in(s, email, address=address())
    except TotpRequired:
        session.clear()
        session["sso_pending"] = {"email": email, "at": now()}
        return redirect(url_for("console.sso_code"))
    except AccountError as exc:
        return render_sign_in(error=_sentence(str(exc)), status=403)
    begin_session(user)
    return redirect(url_for("console.home"))


@bp.route("/sign-in/sso/code", methods=["GET", "POST"])
@requires("public")
def sso_code():
    """The authenticator code of an account that uses one, after the provider signed the person in."""
    _sso()
    pending = session.get("sso_pending")
    if not pending or now() - pending.get("at", 0) > CODE_STEP_SECONDS:
        session.pop("sso_pending", None)
        session["notice"] = "The sign-in took too long or was not started; please sign in again."
        return redirect(url_for("console.sign_in"))
    email = pending["email"]
    if request.method == "GET":
        return render_sign_in(sso_code=True, email=email)
    try:
        with uow() as s:
            user = sso_sign_in(s, email, address=address(), totp_code=request.form.get("code") or None)
    except (TotpRejected, TotpRequired) as exc:
        return render_sign_in(sso_code=True, email=email, error=_sentence(str(exc)))
    except AccountError as exc:
        session.pop("sso_pending", None)
        return render_sign_in(error=_sentence(str(exc)), status=403)
    begin_session(user)
    return redirect(url_for("console.home"))


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _metadata(sso: dict) -> dict:
    """The provider's discovery document (read once), whose issuer must be the configured one."""
    try:
        metadata = sso["client"].load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        log.warning("single sign-on: the provider's discovery document could not be read (%s)", type(exc).__name__)
        raise SsoFailure(UNREACHABLE.format(where="its discovery document could not be read")) from None
    found = str(metadata.get("issuer", ""))
    if found.rstrip("/") != sso["issuer"].rstrip("/"):
        sso["client"].server_metadata.pop("_loaded_at", None)  # read it again next time
        raise SsoFailure(OTHER_ISSUER.format(found=found or "none", issuer=sso["issuer"]))
    return metadata


def _verified_email(sso: dict) -> str:
    """The e-mail address in the provider's checked answer; :class:`SsoFailure` when it cannot be used."""
    client = sso["client"]
    error = request.args.get("error")
    if error:  # the person cancelled, or the provider refused them
        state = request.args.get("state")
        if state and client.framework.get_state_data(session, state) is None:
            raise SsoFailure(STATE_REFUSED)
        code = error if re.fullmatch(r"[a-z_]{1,40}", error) else "error"
        description = ""
        if state:  # the provider's own words, only for a sign-in this browser began (not text planted in a link)
            client.framework.clear_state_data(session, state)
            description = " ".join((request.args.get("error_description") or "").split())[:200]
        raise SsoFailure(PROVIDER_SAID_NO.format(error=code + (": " + description if description else "")))
    metadata = _metadata(sso)
    options = {"iss": {"essential": True, "value": metadata["issuer"]},
               "aud": {"essential": True, "value": client.client_id}}
    try:
        token = client.authorize_access_token(claims_options=options, leeway=LEEWAY_SECONDS)
    except MismatchingStateError:
        raise SsoFailure(STATE_REFUSED) from None
    except ExpiredTokenError:
        raise SsoFailure(REFUSED.format(why=WHY["exp"])) from None
    except ClaimError as exc:
        claim = exc.claim.split(",")[0]
        raise SsoFailure(REFUSED.format(why=WHY.get(claim, f"its '{exc.claim}' claim is missing or wrong"))) from None
    except BadSignatureError:
        raise SsoFailure(REFUSED.format(why="its signature is not the provider's")) from None
    except JoseError as exc:
        raise SsoFailure(REFUSED.format(why=f"its ID token could not be read ({exc.error})")) from None
    except OAuthError as exc:  # the token endpoint refused the code (used, expired, wrong client secret)
        raise SsoFailure(CODE_REFUSED.format(error=exc.error or "error")) from None
    except (requests.RequestException, ValueError) as exc:
        log.warning("single sign-on: the provider could not be reached (%s)", type(exc).__name__)
        raise SsoFailure(UNREACHABLE.format(where="the token could not be fetched")) from None
    claims = token.get("userinfo")
    if not claims:  # no ID token: nothing checked says who this is
        raise SsoFailure(REFUSED.format(why="it carries no ID token"))
    email, verified = claims.get("email"), claims.get("email_verified")
    if not email and metadata.get("userinfo_endpoint"):
        try:
            info = client.userinfo(token=token)
        except (requests.RequestException, ValueError, OAuthError):
            raise SsoFailure(UNREACHABLE.format(where="the user information could not be fetched")) from None
        if info.get("sub") != claims.get("sub"):
            raise SsoFailure(REFUSED.format(why="its user information is about someone else than its ID token"))
        email, verified = info.get("email"), info.get("email_verified")
    if not email or not isinstance(email, str):
        raise SsoFailure(NO_EMAIL)
    if verified is False or (isinstance(verified, str) and verified.strip().lower() == "false"):
        raise SsoFailure(UNVERIFIED.format(email=email))
    return email
