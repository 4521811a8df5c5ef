"""Care teams: a name and its members.  A clinician sees a patient's in-treatment data (check-ins, trend, alliance
alerts) of the stays their teams have, and of no other stay (:func:`visible_stays`); a patient is theirs when one of
the patient's stays is (:func:`may_see`).  A patient who moved from one team to another is seen by each team for
its own stay only.  A stay's team is ``episodes.care_team_id`` and nothing else: its alliance alerts go with it
(a stay moved to another team takes its open alerts along).  Administrators see every team."""
from __future__ import annotations

from sqlalchemy import ColumnElement, delete, select, true
from sqlalchemy.orm import Session

from ..db import audit
from ..models import CareTeam, CareTeamMember, Episode, User

CLINICIAN = "clinician"


class CareTeamError(ValueError):
    """A refusal in plain words."""


def find_team(session: Session, name: str) -> CareTeam | None:
    return session.scalar(select(CareTeam).where(CareTeam.name == name.strip()))


def teams_by_name(session: Session) -> dict[str, int]:
    return dict(session.execute(select(CareTeam.name, CareTeam.id)).all())


def add_team(session: Session, name: str, *, actor: str) -> CareTeam:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise CareTeamError("a care team's name is 1 to 100 characters")
    if find_team(session, name) is not None:
        raise CareTeamError(f"there is already a care team named {name!r}")
    team = CareTeam(name=name)
    session.add(team)
    session.flush()
    audit(session, "care_team_added", actor=actor, team=name)
    return team


def _team(session: Session, name: str) -> CareTeam:
    team = find_team(session, name)
    if team is None:
        known = ", ".join(sorted(teams_by_name(session))) or "none yet"
        raise CareTeamError(f"there is no care team named {name!r} (care teams: {known})")
    return team


def _user(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise CareTeamError(f"there is no account for {email.strip().lower()}")
    return user


def add_member(session: Session, team_name: str, email: str, *, actor: str) -> None:
    team, user = _team(session, team_name), _user(session, email)
    if session.get(CareTeamMember, (team.id, user.id)) is None:
        session.add(CareTeamMember(team_id=team.id, user_id=user.id))
        audit(session, "care_team_member_added", actor=actor, team=team.name, member=user.email)


def remove_member(session: Session, team_name: str, email: str, *, actor: str) -> None:
    team, user = _team(session, team_name), _user(session, email)
    session.execute(delete(CareTeamMember).where(CareTeamMember.team_id == team.id,
                                                 CareTeamMember.user_id == user.id))
    audit(session, "care_team_member_removed", actor=actor, team=team.name, member=user.email)


def list_teams(session: Session) -> list[tuple[str, list[str]]]:
    """Every team with its members' e-mails, by name."""
    members: dict[int, list[str]] = {}
    for team_id, email in session.execute(select(CareTeamMember.team_id, User.email)
                                          .join(User, User.id == CareTeamMember.user_id).order_by(User.email)):
        members.setdefault(team_id, []).append(email)
    return [(t.name, members.get(t.id, [])) for t in session.scalars(select(CareTeam).order_by(CareTeam.name))]


def team_ids_of(session: Session, user: User) -> list[int] | None:
    """The teams whose patients ``user`` sees: None for every team (not a clinician), else their own."""
    if user.role != CLINICIAN:
        return None
    return list(session.scalars(select(CareTeamMember.team_id).where(CareTeamMember.user_id == user.id)))


def visible_stays(teams: list[int] | None) -> ColumnElement[bool]:
    """A condition on ``Episode``: the stays whose in-treatment data a user with ``teams`` (:func:`team_ids_of`)
    sees: their teams' stays, or every stay (None)."""
    return true() if teams is None else Episode.care_team_id.in_(teams or [-1])


def may_see(session: Session, user: User, patient_pk: int) -> bool:
    """May ``user`` see this patient at all?  A clinician when one of the patient's stays is their team's; what they
    see then is those stays only (:func:`visible_stays`)."""
    return sees(session, team_ids_of(session, user), patient_pk)


def sees(session: Session, teams: list[int] | None, patient_pk: int) -> bool:
    """:func:`may_see` for a user whose teams (:func:`team_ids_of`) are known already."""
    if teams is None:
        return True
    return session.scalar(select(Episode.id).where(Episode.patient_id == patient_pk, visible_stays(teams))
                          .limit(1)) is not None
