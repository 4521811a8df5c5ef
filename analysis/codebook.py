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
    Variable("withdrawn", "Withdrew from the study and chose to keep the answers (and check-ins) already given "
                          "(answers after the withdrawal: none; those who chose removal are not in the file)", "binary",
             YES_NO),
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
    """The rule every published count follows, in words (the report's opening, stats.json and the codebook)."""
    from .results import COST_ORDER

    return (f"Counts from 1 to {below - 1} are shown as <{below}. Where the other published counts would give such a "
            f"count away (a total minus the counts shown beside it, the same count in another table, or one published "
            f"count minus another, such as the people an analysis leaves out), more counts are hidden "
            f"and shown as x: the set that costs the results least, in this order from the cheapest to hide: "
            f"{COST_ORDER}; so a descriptive breakdown goes before a response rate, a sample size or a model's input "
            f"(in tables of very small counts, counts below {below} may be shown as x as well). A count the published "
            f"numbers give away is printed, never shown as x. People left out of an analysis are counted in a total "
            f"(suppressed if small), never protected by hiding the analysis. No percentage, rate, mean, median, "
            f"interval, test or "
            f"plotted element is shown for a group whose count is hidden, and figures leave such groups out.")


def suppression_method(below: int) -> str:
    """How the report chooses what to hide (its Methods section)."""
    from .results import BREAKDOWN, GROUP, INPUT, RATE, SIZE, TOTAL

    return ("Suppression: every count the report publishes (its text, tables, stats.json and figures) is one cell of "
            "one model, with the arithmetic that ties counts together recorded as equations (a contact row adds up "
            "to targeted; answered = completed + partial; tertile groups add up to an analysis n and make up its "
            "2x2 table; the people of a later time point, the unrated and the answering are parts of the "
            f"participants). Counts from 1 to {below - 1} are primary suppressions. The complementary suppressions "
            "are the least costly set found by an integer program (scipy's HiGHS), as tau-ARGUS does for linked "
            f"tables: the cost of hiding a count rises from a descriptive breakdown ({BREAKDOWN:g}) through a "
            f"descriptive group ({GROUP:g}), a total the tables already give ({TOTAL:g}), the counts of a response "
            f"rate ({RATE:g}) and a sample size ({SIZE:g}) to a model's input ({INPUT:g}), plus 1 for each share, "
            "interval, mean or test that hiding it removes; the steps between the last three are large, so that no "
            "set of descriptive counts, however many, is kept at the price of a response rate. The number "
            "of people a description or the mixed model covers, when those it leaves out are counted apart beside a "
            "total that is shown (the number rated beside the participants, the mixed model's participants beside "
            "those who answered), is a descriptive group: hiding it removes no statistic, as the reader knows the "
            "group to within the small count left out, so a few participants without an alliance rating cost the "
            "exact number rated (and one part of each breakdown of the rated), never the number of participants. "
            "A solution "
            "is accepted only when a reader who solves every equation together (a linear program for the least "
            "and greatest value of each count) can pin down no suppressed count, and no difference of published "
            f"counts from 1 to {below - 1}; a hidden count that the equations pin down is printed instead. The "
            "responder comparison counts its groups in total, as the contact table does, and gives the number left "
            "out for want of an alliance rating (suppressed if small); so do the alliance description, the "
            "participant flow, the multiple imputation and the mixed model.")


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
