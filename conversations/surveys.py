"""Survey definitions as data: questions, prompts in English and French, answer coding."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Mapping

from .parsing import Parsed, parse_choice, parse_scale
from .text import normalize

LANGUAGES = ("en", "fr")

HEALTH_OPTIONS_EN = ["Excellent", "Very good", "Good", "Fair", "Poor"]
HEALTH_OPTIONS_FR = ["Excellente", "Très bonne", "Bonne", "Passable", "Mauvaise"]
HEALTH_LABELS = [
    ["excellent", "excellente", "exellent", "excelent"],
    ["very good", "v good", "vgood", "very gd", "v gd", "vg", "very well", "tres bien", "tres bonne", "tres bon",
     "tb"],
    ["good", "gd", "bonne", "bon", "bien", "well"],
    ["fair", "ok", "okay", "so so", "so-so", "average", "alright", "passable", "moyenne", "moyen", "correcte",
     "correct", "comme ci comme ca"],
    ["poor", "bad", "terrible", "awful", "mauvaise", "mauvais", "faible", "mediocre", "pauvre", "nulle"],
]


@dataclass(frozen=True)
class Question:
    key: str
    kind: str  # "scale" | "choice"
    prompt: dict[str, str]
    lo: int = 0
    hi: int = 0
    options: list[list[str]] = field(default_factory=list)
    words: Mapping[str, int] = field(default_factory=dict)  # whole replies that mean a value (scales)

    def parse(self, text: str) -> Parsed:
        if self.kind == "scale":
            return parse_scale(text, self.lo, self.hi, self.words)
        parsed = parse_choice(text, self.options)
        # Option 1 is the best; stored codes run the other way: 1 = Poor ... 5 = Excellent.
        return Parsed(len(self.options) + 1 - parsed.value) if parsed.ok else parsed

    @property
    def allowed(self) -> tuple[int, int]:
        return (self.lo, self.hi) if self.kind == "scale" else (1, len(self.options))


def _health(key: str, en_what: str, fr_what: str) -> Question:
    en = ", ".join(f"{i} {label}" for i, label in enumerate(HEALTH_OPTIONS_EN, 1))
    fr = ", ".join(f"{i} {label}" for i, label in enumerate(HEALTH_OPTIONS_FR, 1))
    return Question(key=key, kind="choice", options=HEALTH_LABELS, prompt={
        "en": f"In general, how would you rate your {en_what}? Reply {en}",
        "fr": f"En général, comment évaluez-vous votre {fr_what}? Répondez {fr}",
    })


def _meaning(**values: list[str]) -> dict[str, int]:
    """Whole replies by the value they mean (``_0=[...]``), normalised as replies are."""
    return {normalize(w): int(v.lstrip("_")) for v, ws in values.items() for w in ws}


# The prompt names the ends of the scale; people answer with those words too.
SELF_EFFICACY = Question(key="self_efficacy", kind="scale", lo=0, hi=10, words=_meaning(
    _0=["not at all", "pas du tout", "not confident at all", "pas du tout confiant", "pas du tout confiante"],
    _10=["completely", "complètement", "totally", "totalement", "entièrement", "fully",
         "completely confident", "complètement confiant", "complètement confiante"],
), prompt={
    "en": "How confident are you today in your ability to work on your recovery? "
          "Reply 0 (not at all) to 10 (completely)",
    "fr": "Aujourd'hui, à quel point avez-vous confiance en votre capacité de travailler sur votre "
          "rétablissement? Répondez de 0 (pas du tout) à 10 (complètement)",
})
MENTAL_HEALTH = _health("mental_health", "mental health", "santé mentale")
PHYSICAL_HEALTH = _health("physical_health", "physical health", "santé physique")
DAYS_USED = Question(key="days_used", kind="scale", lo=0, hi=30, words=_meaning(
    _0=["none", "never", "no days", "not once", "not at all", "none at all", "not one day", "not a single day",
        "nada", "aucun", "aucune", "jamais", "pas du tout", "pas une fois", "pas un jour", "pas un seul jour",
        "aucune fois", "aucun jour", "0 jours", "zéro jour"],
    _30=["every day", "everyday", "every single day", "daily", "all of them", "all 30", "all 30 days",
         "tous les jours", "chaque jour", "tout les jours", "à tous les jours"],
), prompt={
    "en": "In the past 30 days, on how many days did you use alcohol or other drugs? Reply a number from 0 to 30",
    "fr": "Au cours des 30 derniers jours, combien de jours avez-vous consommé de l'alcool ou d'autres drogues? "
          "Répondez un nombre de 0 à 30",
})

def _checkin_questions() -> tuple[Question, ...]:
    """The alliance check-in's statements (``data/alliance_checkin.toml``), one scale question each."""
    data = tomllib.loads((resources.files("conversations") / "data" / "alliance_checkin.toml").read_text("utf-8"))
    words = _meaning(**{f"_{value}": ws for value, ws in data["words"].items()})
    count = len(data["statements"]["en"])
    return tuple(Question(key=f"{data['key_prefix']}{i}", kind="scale", lo=data["lo"], hi=data["hi"], words=words,
                          prompt={lang: f"{i}/{count}. {statements[i - 1]} {data['reply'][lang]}"
                                  for lang, statements in data["statements"].items()})
                 for i in range(1, count + 1))


CHECKIN_QUESTIONS = _checkin_questions()
ALL_QUESTIONS = (SELF_EFFICACY, MENTAL_HEALTH, PHYSICAL_HEALTH, DAYS_USED, *CHECKIN_QUESTIONS)
QUESTIONS = {q.key: q for q in ALL_QUESTIONS}


@dataclass(frozen=True)
class Survey:
    name: str
    questions: tuple[Question, ...]

    @property
    def keys(self) -> list[str]:
        return [q.key for q in self.questions]


SURVEY_30 = Survey("followup_30", (SELF_EFFICACY, MENTAL_HEALTH, PHYSICAL_HEALTH))
SURVEY_LATER = Survey("followup_later", (SELF_EFFICACY, MENTAL_HEALTH, PHYSICAL_HEALTH, DAYS_USED))


SURVEY_CHECKIN = Survey("alliance_checkin", CHECKIN_QUESTIONS)


def is_checkin(timepoint_days: int) -> bool:
    """A conversation's ``timepoint_days`` below zero marks an alliance check-in during the stay: ``-k`` is the
    stay's k-th check-in period (a follow-up's time point is days after discharge, always above zero)."""
    return timepoint_days < 0


def survey_for(timepoint_days: int) -> Survey:
    """30-day follow-ups ask three questions; 90 days and later add days of use; a check-in (below zero) asks the
    alliance's six statements."""
    if is_checkin(timepoint_days):
        return SURVEY_CHECKIN
    return SURVEY_30 if timepoint_days < 90 else SURVEY_LATER
