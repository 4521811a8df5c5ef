"""The export's contract: every variable with its label, type and codes (codebook and embedded labels)."""
from __future__ import annotations

from dataclasses import dataclass, field

from outreach.study.waves import OUTCOMES

YES_NO = {0: "No", 1: "Yes"}
HEALTH = {1: "Poor", 2: "Fair", 3: "Good", 4: "Very good", 5: "Excellent"}


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    type: str  # string | integer | numeric | binary | category
    codes: dict = field(default_factory=dict)


STATUS_CODES = dict(OUTCOMES)  # research outcome codes, shared with `waves status` and the report

VARIABLES = [
    Variable("participant", "Pseudonymous participant id (HMAC-SHA256 of the site id, 16 hex)", "string"),
    Variable("episode", "Treatment episode: 1 = the participant's first stay, 2 = the next (readmission), ... "
                        "in discharge order; alliance and time points refer to this stay's discharge", "integer"),
    Variable("patient_id", "Site patient id (identified exports only)", "string"),
    Variable("discharge_date", "Discharge date of this episode (identified exports only)", "string"),
    Variable("timepoint_days", "Follow-up time point, days after this episode's discharge", "integer"),
    Variable("status", "Research outcome of the follow-up (the first code that applies, in this order)", "category",
             STATUS_CODES),
    Variable("responded", "Gave at least one usable answer", "binary", YES_NO),
    Variable("days_to_response", "Days from this episode's discharge to the first usable answer", "integer"),
    Variable("contact_attempts", "Invitations and reminders sent", "integer"),
    *[Variable(f"alliance_{i}", f"Alliance item {i} at discharge (0-6)", "integer") for i in range(1, 7)],
    Variable("alliance_mean", "Alliance mean score (0-6; missing when fewer than 5 items answered)", "numeric"),
    Variable("alliance_bond", "Alliance bond subscale, items 2, 3, 5 (0-6)", "numeric"),
    Variable("alliance_goal_task", "Alliance goal/task subscale, items 1, 4, 6 (0-6)", "numeric"),
    Variable("alliance_tertile", "Alliance tertile, cut over the ratings of every treatment episode in this "
             "export, each episode counted once whatever its number of time points", "category",
             {"low": "lowest third", "mid": "middle third", "high": "highest third"}),
    Variable("self_efficacy", "Confidence in ability to work on recovery (0 not at all - 10 completely)", "integer"),
    Variable("self_efficacy_high", "Self-efficacy 8 or more", "binary", YES_NO),
    Variable("mental_health", "Self-rated mental health", "integer", HEALTH),
    Variable("physical_health", "Self-rated physical health", "integer", HEALTH),
    Variable("mental_health_high", "Mental health very good or excellent", "binary", YES_NO),
    Variable("physical_health_high", "Physical health very good or excellent", "binary", YES_NO),
    Variable("days_used", "Days of alcohol or other drug use in the past 30 (asked from 90 days on)", "integer"),
    Variable("withdrawn", "Withdrew from the study and chose to keep the answers already given (answers after the "
                          "withdrawal: none; those who chose removal are not in the file)", "binary", YES_NO),
    Variable("withdrawn_days", "Days from this episode's discharge to the withdrawal (missing: not withdrawn)",
             "integer"),
    Variable("age", "Age at discharge", "integer"),
    Variable("sex", "Sex as recorded by the site", "string"),
    Variable("length_of_stay_days", "Length of this stay, days", "integer"),
    Variable("primary_substance", "Primary substance at this stay, as recorded by the site", "string"),
    Variable("program", "Program of this stay, as recorded by the site", "string"),
    # The companion file of check-ins during treatment (FILE.alliance_checkins.*: analysis.checkins)
    Variable("treatment_week", "Treatment week of the check-in: 1 = the first seven days from admission", "integer"),
    Variable("days_since_admission", "Days from admission to the check-in", "integer"),
    Variable("days_before_discharge", "Days from the check-in to the discharge (missing while in treatment)", "integer"),
    Variable("method", "How the check-in was taken", "category",
             {"tablet": "on the ward's tablet", "sms": "by text message", "import": "the discharge file's rating"}),
    *[Variable(f"checkin_{i}", f"Alliance statement {i} at this check-in (0-6)", "integer") for i in range(1, 7)],
    Variable("checkin_mean", "Alliance mean at this check-in (0-6; missing when fewer than 5 statements answered)",
             "numeric"),
    Variable("checkin_bond", "Bond subscale at this check-in, statements 2, 3, 5 (0-6)", "numeric"),
    Variable("checkin_goal_task", "Goal/task subscale at this check-in, statements 1, 4, 6 (0-6)", "numeric"),
]
BY_NAME = {v.name: v for v in VARIABLES}


def suppression_text(below: int) -> str:
    return (f"Counts from 1 to {below - 1} are shown as <{below}; where a total and the other counts of its row or "
            f"column would give such a count away, the next smallest count is hidden too and shown as x (in tables of "
            f"very small counts, counts below {below} may be shown as x as well). No "
            f"percentage, interval or test is shown for a group whose count is hidden (it could give the count "
            f"away), no mean, median or SD for a group of fewer than {below} (a mean does not give a count away), and "
            f"figures leave such groups out.")


FOLLOW_UP_UNIT = ("One row per participant, treatment episode and follow-up time point; count people with "
                  "'participant', not rows")


def notes(suppress_below: int, unit: str = FOLLOW_UP_UNIT) -> list[dict]:
    """Rows after the variables in the codebook file: what one row is, and the rule any count published from the
    file must follow (the report applies it; a researcher tabulating the file themselves must too)."""
    return [
        {"variable": "(unit)", "type": "note", "codes": "", "label": unit},
        {"variable": "(publication rule)", "type": "note", "codes": "",
         "label": "This file holds individual rows and is not suppressed. Tables or figures made from it for anyone "
                  "outside the study team follow the report's rule (SUPPRESS_BELOW = "
                  f"{suppress_below}): {suppression_text(suppress_below)}"},
    ]
