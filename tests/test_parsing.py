"""Reply parsing, table-driven: what people really type."""
import pytest

from conversations.lexicon import is_crisis, keyword
from conversations.surveys import DAYS_USED, MENTAL_HEALTH, SELF_EFFICACY

SCALE_ACCEPTED = [
    ("7", 7), ("seven", 7), ("Seven", 7), ("sept", 7), ("dix", 10), ("ten", 10), ("zero", 0), ("zéro", 0),
    ("0", 0), ("10", 10), ("8/10", 8), ("8 / 10", 8), ("8 out of 10", 8), ("8 sur 10", 8), ("about 7", 7),
    ("About 7.", 7), (" 7. ", 7), ("7!", 7), ("7 !!", 7), ("I'd say 8", 8), ("probably a 6", 6),
    ("environ 5", 5), ("je dirais six", 6), ("9 😊", 9), ("10 completely", 10), ("une", 1), ("un", 1),
    ("neuf", 9), ("Quatre", 4),
    # the ends of the scale, in the prompt's own words
    ("not at all", 0), ("Not at all.", 0), ("pas du tout", 0), ("completely", 10), ("Completely!", 10),
    ("complètement", 10), ("totally", 10), ("about 7", 7), ("not sure, 7", 7),
    ("7/10 today", 7), ("I'm at 7 out of 10 today", 7), ("je dirais 7 sur 10 aujourd'hui", 7),
    ("seven out of ten", 7),
]
SCALE_REJECTED = [
    ("7 or 8", "more than one number"), ("7 ou 8", "more than one number"), ("5-6", "more than one number"),
    ("5 to 6", "more than one number"), ("7.5", "decimal"), ("7,5", "decimal"), ("11", "out of range"),
    ("-1", "out of range"), ("eleven", "out of range"), ("often", "no number"), ("", "empty"),
    ("yes", "no number"), ("4/5", "different scale"), ("  ", "empty"), ("lots", "no number"),
    ("not 10", "negated"), ("not even 1", "negated"), ("pas un", "negated"), ("not a 10", "negated"),
    ("not completely", "no number"), ("7 or 8 out of 10", "more than one number"), ("11/28", "different scale"),
]


@pytest.mark.parametrize("text, value", SCALE_ACCEPTED)
def test_self_efficacy_accepts(text, value):
    assert SELF_EFFICACY.parse(text).value == value


@pytest.mark.parametrize("text, problem", SCALE_REJECTED)
def test_self_efficacy_rejects(text, problem):
    parsed = SELF_EFFICACY.parse(text)
    assert parsed.value is None
    assert parsed.problem == problem


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("none", 0), ("None.", 0), ("never", 0), ("aucun", 0), ("jamais", 0), ("30", 30), ("trente", 30),
    ("twenty-two", 22), ("twenty two", 22), ("vingt-deux", 22), ("vingt et un", 21), ("3 days", 3),
    ("about 12", 12), ("12/30", 12), ("not at all", 0), ("none at all", 0), ("pas une fois", 0),
    ("twenty two out of 30", 22), ("3/30 days", 3), ("every day", 30), ("Every day.", 30), ("daily", 30), ("tous les jours", 30), ("chaque jour", 30),
])
def test_days_used_accepts(text, value):
    assert DAYS_USED.parse(text).value == value


@pytest.mark.parametrize("text", ["31", "8/10", "3 or 4", "2.5", "a few", "not 5", "every other day", "most days"])
def test_days_used_rejects(text):
    assert DAYS_USED.parse(text).value is None


# Coded so that higher is better: 5 = Excellent ... 1 = Poor.
@pytest.mark.parametrize("text, coded", [
    ("1", 5), ("2", 4), ("3", 3), ("4", 2), ("5", 1), ("Excellent", 5), ("excellente", 5), ("very good", 4),
    ("Very Good!", 4), ("v good", 4), ("très bien", 4), ("tres bonne", 4), ("good", 3), ("bonne", 3),
    ("Bien.", 3), ("fair", 2), ("passable", 2), ("moyenne", 2), ("poor", 1), ("mauvaise", 1), ("bad", 1),
    ("2 very good", 4), ("3. Good", 3), ("two", 4), ("deux", 4), ("un", 5), ("Good 👍", 3),
])
def test_health_choice_accepts(text, coded):
    assert MENTAL_HEALTH.parse(text).value == coded


@pytest.mark.parametrize("text", ["6", "0", "1 poor", "good or fair", "not good", "pas bonne", "2.5", "meh", "",
                                  "1-2"])
def test_health_choice_rejects(text):
    assert MENTAL_HEALTH.parse(text).value is None


@pytest.mark.parametrize("text, kind", [
    ("STOP", "opt_out"), ("stop", "opt_out"), (" Stop. ", "opt_out"), ("STOPALL", "opt_out"),
    ("Unsubscribe", "opt_out"), ("cancel", "opt_out"), ("END", "opt_out"), ("quit!", "opt_out"),
    ("revoke", "opt_out"), ("optout", "opt_out"), ("ARRÊT", "opt_out"), ("arret", "opt_out"),
    ("Arrête", "opt_out"), ("START", "opt_in"), ("unstop", "opt_in"), ("HELP", "help"), ("info", "help"),
    ("Aide", "help"), ("SKIP", "skip"), ("passer", "skip"), ("yes", "yes"), ("Y", "yes"), ("yeah", "yes"),
    ("yep", "yes"), ("sure", "yes"), ("OK", "yes"), ("okay", "yes"), ("oui", "yes"), ("Oui!", "yes"),
    ("👍", "yes"), ("👍🏽", "yes"), ("no", "no"), ("n", "no"), ("nope", "no"), ("non", "no"), ("not now", "no"),
    ("later", "no"), ("Later.", "no"),
    ("ok sure", "yes"), ("I'm ready", "yes"), ("oui oui", "yes"), ("No thank you", "no"), ("not today", "no"),
    ("pas aujourd'hui", "no"),
    # plain requests to stop, which the carrier does not act on
    ("please stop texting me?", "opt_out_request"), ("Stop please", "opt_out_request"),
    ("STOP STOP", "opt_out_request"), ("remove me from this list", "opt_out_request"),
    ("don't text me", "opt_out_request"), ("leave me alone", "opt_out_request"), ("Arrêtez", "opt_out_request"),
    ("Arrêtez de m'écrire!", "opt_out_request"), ("désabonnez-moi", "opt_out_request"),
    ("Who is this?", "help"), ("what's this", "help"), ("qui est-ce?", "help"), ("wrong number", "wrong_number"),
    ("Wrong #", "wrong_number"), ("mauvais numéro", "wrong_number"),
    ("I can't stop drinking", None), ("the end", None), ("stop drinking is hard", None), ("remove the pain", None),
    ("yes and no", None), ("7", None),
])
def test_keywords_are_whole_messages(text, kind):
    assert keyword(text) == kind


CRISIS = [
    "I want to die", "i wanna die", "I don't want to live anymore", "dont want to live", "thinking about suicide",
    "I'm suicidal", "suicde", "sucide thoughts", "I want to kill myself", "gonna kill my self", "kms",
    "I want to end my life", "going to end it all tonight", "I took an overdose", "I think I OD'd", "I might OD",
    "over dose", "I want to hurt myself", "i keep cutting myself", "self harm again", "better off dead",
    "nothing to live for", "no reason to live", "I wish I was dead",
    "je veux me tuer", "Je veux me suicider", "j'ai envie de mourir", "je veux mourir", "je suis suicidaire",
    "je veux en finir", "mettre fin à mes jours", "j'ai fait une surdose", "je veux me faire du mal",
    "SUICIDE", "Suicide.", "7 but honestly I want to die",
    # how people say it without the clinical words
    "I want to unalive myself", "I don't want to be here anymore", "i cant go on like this",
    "thinking of ending it", "nobody would miss me", "everyone is better off without me", "I OD'd last night",
    "gonna swallow all my pills", "just kill me", "so tired of living",
    "j'ai des pensées suicidaires", "je veux plus vivre", "j'en peux plus", "je me coupe encore",
    "je vais avaler tous mes médicaments", "personne ne me regretterait",
]
NOT_CRISIS = ["7", "very good", "I can't stop drinking", "good", "I'm dying to see my kids", "ok", "STOP",
              "this is annoying", "bonne", "my dad died last year", "that's odd", "I'm tired today",
              "I ended it with my ex", "je peux plus venir mardi", "pas mal",
              "I take all my pills every day", "oui j'ai pris tous mes médicaments"]  # taking medication as prescribed


@pytest.mark.parametrize("text", CRISIS)
def test_crisis_phrases_are_recognised(text):
    assert is_crisis(text)


def test_crisis_recall_on_the_phrase_table():
    missed = [t for t in CRISIS if not is_crisis(t)]
    assert missed == []


@pytest.mark.parametrize("text", NOT_CRISIS)
def test_ordinary_replies_are_not_crisis(text):
    assert not is_crisis(text)
