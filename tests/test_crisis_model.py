"""The crisis detector's learned second opinion (conversations/crisis_model.py): the pure-Python scorer gives
scikit-learn's probabilities, it needs neither scikit-learn nor numpy, and detect() uses it only when no rule
matches.  (scikit-learn is not needed here: the check pairs in the JSON were computed by it at training time.)"""
import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from conversations import crisis, crisis_model
from conversations.crisis import MODEL_RULE, detect, model_match, rule_match

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data():
    return json.loads((resources.files("conversations") / "data" / "crisis_model.json").read_text("utf-8"))


def test_the_pure_python_probability_is_scikit_learns(data):
    checks = data["checks"]
    assert len(checks) >= 40
    assert any(not text.isascii() for text, _ in checks), "no check pair exercises accent stripping"
    assert {p >= data["threshold"] for _, p in checks} == {True, False}, "check pairs on one side of the threshold"
    worst = max(abs(crisis_model.probability(text) - p) for text, p in checks)
    assert worst <= 1e-9, worst


def test_it_was_trained_on_no_blind_batch(data):
    # batches 5 and 6 were blind once and are dev data since; of batch 7 only its dev half may be read (batch7.tsv
    # holds the held-out half too, batch7_heldout.tsv is the next blind test); batch 8 and later are blind
    paths = [f["path"] for s in data["training"]["sources"] for f in s["files"]]
    names = [Path(p).name for p in paths]
    batches = [int(n) for p in names for n in re.findall(r"batch(\d+)", p)]
    assert paths and batches and max(batches) <= 7, paths
    assert not {"batch7.tsv", "batch7_heldout.tsv"} & set(names), paths
    assert all(n == "batch7_dev.tsv" for n in names if n.startswith("batch7")), paths
    assert not [p for p in paths if "batch7" in Path(p).parent.as_posix()], paths
    assert 0 < data["threshold"] < 1 and data["C"] > 0


def test_the_scorer_needs_neither_scikit_learn_nor_numpy():
    code = ("import sys; from conversations import crisis; crisis.detect('je veux pu être là'); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'sklearn', 'scipy')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_char_wb_ngrams_are_scikit_learns_including_short_words():
    # TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)) on "a bc": " a" "a " " b" "bc" "c " " bc" "bc "
    # " bc "; a word shorter than n is counted once (" a " for n=3, never again for n=4, 5)
    assert crisis_model._char_wb("a  bc", 2, 5) == [" a", "a ", " a ", " b", "bc", "c ", " bc", "bc ", " bc "]
    assert crisis_model._word("i want to die", crisis_model.re.compile(r"(?u)\b\w\w+\b"), 1, 2) == \
        ["want", "to", "die", "want to", "to die"]
    assert crisis_model._preprocess("J’ÉTAIS Là") == "j’etais la"


def test_the_negation_marks_the_three_words_after_a_negator_up_to_punctuation():
    assert crisis_model.negation_marked("I don't want to die, but I'm tired") == "i dont neg_want neg_to neg_die but im tired"
    assert crisis_model.negation_marked("Je veux PAS mourir. Jamais") == "je veux pas neg_mourir jamais"
    assert crisis_model.negation_marked("not not here") == "not neg_not neg_here"


def test_a_block_reading_another_text_is_named_and_known(data):
    assert {b.get("preprocessor") for b in data["blocks"]} <= {None, "negation_marked"}


@pytest.fixture
def model_says(monkeypatch):
    """Make the model give ``p`` to every text, whatever its words."""
    def set_p(p: float) -> None:
        monkeypatch.setattr(crisis_model, "probability", lambda text: p)
    return set_p


def test_a_text_no_rule_catches_is_caught_by_the_model_at_its_threshold_and_its_why_quotes_no_word(model_says):
    text = "the garden looks lovely this morning"
    threshold = crisis_model.model().threshold
    assert rule_match(text) is None
    model_says(threshold)
    match = detect(text)
    assert match is not None and match.rule == MODEL_RULE
    assert f"{threshold:.2f}" in match.why
    assert not any(w in match.why.lower() for w in ("garden", "lovely", "morning")), match.why
    model_says(threshold - 1e-6)
    assert detect(text) is None


def test_the_model_is_not_asked_when_the_rules_read_every_word_as_idioms_and_contexts(model_says):
    model_says(0.999)
    for text in ("I cut myself shaving", "i dont want to die", "my friend said she wanted to die",
                 "je veux pas mourir"):
        assert crisis.read_as_ordinary(text) and detect(text) is None, text
    for text in ("I cut myself shaving and I can't go on like this", "i dont want to die but i see no way out",
                 "no I'm not suicidal, just tired", "the garden looks lovely"):
        assert not crisis.read_as_ordinary(text) and detect(text).rule in (MODEL_RULE, *[i for i, _ in
                                                                                       crisis.rules().danger_ids]), text


def test_the_model_is_not_asked_about_a_text_without_words_nor_a_keyword(model_says):
    model_says(0.999)
    # the real model gives "." 0.90 and "je veux me désabonner" 0.93: an opt-out must stay an opt-out
    for text in (".", "...", "/6. ", "🙂", "Je veux me désabonner", "STOP", "oui", "non", "ok", "merci"):
        assert not crisis.model_asked(text) and detect(text) is None, text
    assert crisis.model_asked("je veux me reposer")


def test_the_model_is_not_asked_about_a_fragment_with_no_word_of_meaning(model_says):
    # the real model gave "je" 0.95, "me" 0.91, "je veux" 0.95, "i want" 0.98, "im" 0.97: letter shapes, not meaning
    model_says(0.99)
    for text in ("je", "me", "Je veux", "i want", "it", "I'm", "je me", "i am", "moi", "and", "J'veux", "you?"):
        assert not crisis.model_asked(text) and detect(text) is None, text
    # a negation, an adverb or any other word is meaning: the model is asked
    for text in ("i cant", "je veux plus", "why me", "me too", "je m'en vais", "i want pizza", "je veux partir"):
        assert crisis.model_asked(text), text


def test_rules_come_first_and_the_model_only_adds():
    assert detect("honestly I want to die").rule == "en.want_die"   # a rule, even if the model agrees
    assert detect("7") is None and detect("") is None
    assert model_match("") is None
    explained = crisis.explain("honestly I want to die")
    assert explained["rule"].rule == "en.want_die" and 0 <= explained["model"]["p"] <= 1


def test_the_json_ships_with_the_package():
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    assert '"data/*.json"' in pyproject
