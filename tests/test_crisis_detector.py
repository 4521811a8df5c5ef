"""The crisis detector measured on its corpus (tests/corpus/), plus table tests of how it reads texts.

The rules were written from the dev half; the held-out half measures them on messages they were not
written for.  Recall comes first: a false alarm costs a coordinator a minute, a miss can cost a life.
"""
import time
from pathlib import Path

import pytest

from benchmarks.crisis_blind import load as load_batch
from benchmarks.crisis_blind import score
from benchmarks.crisis_figures import figures, load
from conversations import crisis
from conversations.crisis import Match, detect, is_crisis, normalise
from conversations.lexicon import is_crisis as lexicon_is_crisis

MIN_RECALL_HELDOUT = 0.97
MIN_RECALL_WHOLE = 0.99
MAX_FALSE_ALARMS = 0.02


@pytest.fixture(scope="module")
def measured():
    return figures()


def _listed(rows) -> str:
    return "\n".join(f"  [{m.half} {m.lang}] {m.text}" for m in rows)


def test_the_corpus_is_big_enough_bilingual_and_split_in_halves():
    messages = load()
    crisis_msgs = [m for m in messages if m.kind == "crisis"]
    ordinary = [m for m in messages if m.kind == "ordinary"]
    assert len(crisis_msgs) >= 400 and len(ordinary) >= 1000
    for rows in (crisis_msgs, ordinary):
        dev = sum(m.half == "dev" for m in rows)
        assert abs(dev - len(rows) / 2) <= 0.05 * len(rows)
    french = sum(m.lang == "fr" for m in crisis_msgs) / len(crisis_msgs)
    assert 0.3 <= french <= 0.5
    texts = [m.text for m in messages]
    assert len(texts) == len(set(texts)), "a message is in the corpus twice"


def test_recall_on_the_held_out_crisis_messages(measured):
    caught, total = measured.recall["heldout"]
    missed = [m for m in measured.misses if m.half == "heldout"]
    assert caught / total >= MIN_RECALL_HELDOUT, \
        f"held-out recall {caught}/{total} is under {MIN_RECALL_HELDOUT:.0%}; missed:\n{_listed(missed)}"


def test_recall_on_the_whole_crisis_corpus(measured):
    caught, total = measured.recall["whole"]
    assert caught / total >= MIN_RECALL_WHOLE, \
        f"recall {caught}/{total} is under {MIN_RECALL_WHOLE:.0%}; missed:\n{_listed(measured.misses)}"


def test_false_alarms_on_ordinary_replies(measured):
    flagged, total = measured.false_alarms["whole"]
    assert flagged / total <= MAX_FALSE_ALARMS, f"{flagged}/{total} ordinary replies flagged:\n" + "\n".join(
        f"  [{m.half} {m.lang}] {m.text}   <- {rule}" for m, rule in measured.alarms)


def test_it_is_fast(measured):
    assert measured.ms_per_message < 10  # about 1 ms; this only catches a runaway pattern, not a slower machine


def test_a_long_text_does_not_make_it_crawl():
    start = time.perf_counter()
    for text in ("k i l l " * 200, "i dont want to " * 150, "je veux pu " * 200, "a1" * 800):
        detect(text)
    assert time.perf_counter() - start < 3  # about 0.4 s; a pattern that backtracks runs for minutes


# What each normalisation step does, in the reading the rules see.
@pytest.mark.parametrize("text, reading", [
    ("Je VEUX Mourir", "je veux mourir"),                        # lower case
    ("j'ai pensé à ça", "je ai pense a ca"),                     # accents, French elision
    ("J’veux pu être là", "je veux plus etre la"),               # curly apostrophe, j'veux, pu
    ("jveux mourir", "je veux mourir"),                          # jveux
    ("chu pu capable", "je suis plus capable"),                  # chu, pu
    ("jsuis tanné", "je suis tanne"),                            # jsuis
    ("chui fatigué", "je suis fatigue"),                         # chui
    ("m'as me tuer", "je vais me tuer"),                         # Québécois m'as = je vais
    ("je n'en peux plus", "je en peux plus"),                    # ne dropped
    ("k1ll mys3lf", "kill myself"),                              # digits for letters
    ("$uicid@l", "suicidal"),                                    # symbols for letters
    ("d!e", "die"),                                              # ! inside a word
    ("7/10 at 10am", "7 10 at 10am"),                            # numbers are left alone
    ("k i l l myself", "kill myself"),                           # spaced letters
    ("s.u.i.c.i.d.e", "suicide"),                                # dotted letters
    ("u r a good team", "you are a good team"),                  # single letters that are words stay
    ("killmyself", "kill myself"),                               # run together
    ("i want to over dose", "i want to overdose"),               # split key word
    ("suicde", "suicide"),                                       # one letter dropped
    ("sucidal", "suicidal"),                                     # another
    ("myslef", "myself"),                                        # two letters swapped
    ("je veux mourrir", "je veux mourir"),                       # one letter added
    ("s*icide", "suicide"),                                      # * for a letter
    ("sewer slide", "suicide"),                                  # slang
    ("kms", "kill myself"),                                      # abbreviation
    ("I'm gonna", "i am going to"),                              # contractions
    ("I don't wanna", "i dont want to"),
    ("i want 2 die", "i want to die"),                           # 2 for to
    ("i wanna b dead", "i want to be dead"),                     # b for be
    ("I OD'd", "i overdosed"),                                   # OD'd
    ("I want to dye", "i want to die"),                          # dye misspelt for die
    ("I want to dye my hair", "i want to dye my hair"),          # ... but not when it is dye
    ("ok. bye!", "ok . bye ."),                                  # sentence punctuation
    ("🔫 me", "emo_gun me"),                                     # danger emoji as words
    ("😵 tired", "tired"),                                       # other emoji dropped
    ("je vais courir", "je vais courir"),                        # not "mourir": an ordinary word
    ("je vais prendre", "je vais prendre"),                      # not "pendre"
])
def test_normalisation(text, reading):
    assert reading in normalise(text)


@pytest.mark.parametrize("text, readings", [
    ("i want to diiiie", {"i want to die"}),
    ("tooook toooo many", {"took too many"}),
    ("je veux mouriiiir", {"je veux mourir"}),
    ("wanna diee", {"want to die"}),
])
def test_letters_repeated_are_read_as_two_and_as_one(text, readings):
    assert readings <= set(normalise(text))


# Idioms that must not trigger, and the same idioms next to a real danger statement, which must.
IDIOMS = [
    "I'm dying to get back to work", "this weather is killing me", "dead tired today", "killing it at work",
    "my back is killing me", "I'm so bored I could die", "the cake was to die for", "I almost died laughing",
    "I nearly killed myself laughing", "my phone died", "I cut myself shaving", "overdosed on chocolate lol",
    "I'm dying for a coffee", "bored to death", "je meurs de faim", "chu mort de fatigue",
    "je me tue à travailler", "mon dos me tue", "ça me tue cette chaleur", "mes enfants vont me faire mourir",
    "ennuyant à mourir", "mort de rire", "mon cell va mourir", "overdose de chocolat",
    "I quit drinking", "j'ai arrêté de boire", "I drank last weekend", "I take all my pills every day",
    "oui j'ai pris tous mes médicaments", "I took my meds this morning", "I'm done with that life",
    "I ended it with my ex", "I can't go on thursday", "I want out of this job", "je veux pu boire",
    "chu pu capable de mon boss", "j'en peux plus de la chaleur", "je veux en finir avec la boisson",
    "my wife will kill me if I'm late", "I said goodbye to my dealer for good", "goodbye!",
    "I gave away my old couch", "the kids jump off the dock", "I took the whole day off",
    "I bought a bottle of wine", "I don't want to wake up at 6 for work", "💀💀💀", "💊 taken ✅",
]


@pytest.mark.parametrize("text", IDIOMS)
def test_idioms_and_everyday_talk_do_not_trigger(text):
    assert detect(text) is None, detect(text)


@pytest.mark.parametrize("idiom, danger", [
    ("I'm dying to see my kids", "but honestly I want to die"),
    ("this weather is killing me", "and I want to kill myself"),
    ("dead tired", "I took the whole bottle"),
    ("je me tue à travailler", "je veux me tuer"),
    ("I cut myself shaving", "and then I cut my wrists"),
    ("overdosed on chocolate lol", "no seriously I want to overdose"),
    ("I'm so bored I could die", "I want to be dead"),
])
def test_an_idiom_does_not_cancel_a_danger_statement_in_the_same_message(idiom, danger):
    assert detect(idiom) is None
    assert detect(f"{idiom}, {danger}") is not None
    assert detect(f"{danger}. {idiom}") is not None


@pytest.mark.parametrize("text", [
    "I want to die", "i wanna diiiie", "k i l l myself", "k1ll myself", "kms", "unalive", "sewerslide",
    "I took too many pills", "j'ai pris toute la bouteille", "je vais prendre toutes mes pilules",
    "jveux mourir", "chu pu capable", "jsuis pu capable", "je veux m'enlever la vie", "suicde",
    "everyone would be better off without me", "I hope I don't wake up", "I bought a rope",
    "i want to 🪦", "me 🔫😵", "🔫🔫", "💊💊💊💊 all of them tonight",
])
def test_each_way_of_writing_it_is_caught(text):
    assert is_crisis(text) and lexicon_is_crisis(text)


def test_a_match_names_the_rule_and_why():
    match = detect("honestly I want to die")
    assert isinstance(match, Match) and match.rule == "en.want_die" and "want" in match.why
    assert detect("7") is None and detect("") is None


def test_every_rule_has_a_unique_id_and_says_what_it_catches():
    r = crisis.rules()
    ids = [i for i, _ in r.danger_ids + r.idiom_ids]
    assert len(ids) == len(set(ids))
    assert all(why.strip() for _, why in r.danger_ids + r.idiom_ids)


# Batch 3 (benchmarks/crisis_eval/): written blind by someone who had read no rule, split at random into a
# dev half (the rules were changed from it) and a held-out half (measured once, after the changes).  The
# figures asserted are the ones measured: a later change cannot lower them silently.
BATCH3 = Path(__file__).resolve().parent.parent / "benchmarks" / "crisis_eval"
BATCH3_FLOORS = {
    # half: (direct recall, indirect recall, most false alarms on ordinary texts)
    "dev": (1.0, 1.0, 0.0),
    # measured once, blind, after the rules were changed from the dev half (crisis_eval/batch3_heldout.measure.txt)
    "heldout": (27 / 28, 31 / 38, 1 / 89),
    # the whole batch after its held-out misses were fixed too (no longer blind): what it reaches now
    "whole": (1.0, 1.0, 0.0),
    # batch 4, written blind by a new helper and split the same way: the rules were changed from its dev half
    # only, then its held-out half was measured once (crisis_eval/batch4_heldout.measure.txt: direct 25/28,
    # indirect 26/41, 5/91 false alarms); its misses and false alarms were then fixed by families of
    # phrasings, so batch 4 is no longer blind and these are the figures it reaches now
    "batch4 dev": (1.0, 1.0, 0.0),
    "batch4 heldout": (1.0, 1.0, 0.0),
    "batch4 whole": (1.0, 1.0, 0.0),
    # batches 5 and 6, each measured once blind (README), then dev data for the contexts and families of branch
    # crisis7 and training data for the model: what they reach now, no longer a measure
    "batch5 whole": (1.0, 1.0, 0.0),
    "batch6 whole": (1.0, 1.0, 0.0),
    # a round written after those changes by the person who made them, measured once before any fix for it
    # (crisis_eval/after6_author_probes.first-measure.txt: direct 17/20, indirect 10/20, 2/40 false alarms), then fixed
    "after6 author probes": (1.0, 1.0, 0.0),
    # a second round written after every change of the branch, measured once before its fixes
    # (after6_author_probes2.first-measure.txt: direct 18/20, indirect 14/20, 2/41 false alarms), then fixed
    "after6 author probes 2": (1.0, 1.0, 0.0),
    # batch 7's dev half (its held-out half is the next blind test and is never read here): measured before branch
    # crisis7b at direct 32/35, indirect 42/55, 5/120 false alarms, then training data for the model
    "batch7 dev": (35 / 35, 55 / 55, 1 / 120),
    # a round written after batch 7's dev fixes by the person who made them, measured once before any fix for it
    # (crisis_eval/after7_author_probes.first-measure.txt: direct 4/7, indirect 7/13, 3/19; not blind), then a blade
    # over the wrist and no more texts after a day were fixed as families
    "after7 author probes": (5 / 7, 9 / 13, 3 / 19),
}
BATCH_FILES = {"dev": "batch3_dev.tsv", "heldout": "batch3_heldout.tsv", "whole": "batch3.tsv",
               "batch4 dev": "batch4_dev.tsv", "batch4 heldout": "batch4_heldout.tsv", "batch4 whole": "batch4.tsv",
               "batch5 whole": "batch5.tsv", "batch6 whole": "batch6.tsv",
               "after6 author probes": "after6_author_probes.tsv",
               "after6 author probes 2": "after6_author_probes2.tsv", "batch7 dev": "batch7_dev.tsv",
               "after7 author probes": "after7_author_probes.tsv"}


@pytest.mark.parametrize("half", sorted(BATCH3_FLOORS))
def test_batch3_figures_do_not_drop(half):
    result = score(load_batch(BATCH3 / BATCH_FILES[half]))
    counts = result["counts"]
    min_direct, min_indirect, max_alarms = BATCH3_FLOORS[half]
    missed = "\n".join(f"  [{r['category']}/{r['lang']}] {r['text']}" for r in result["misses"])
    for category, floor in (("direct", min_direct), ("indirect", min_indirect)):
        caught, total = counts[("crisis", category)]
        assert total and caught / total >= floor - 1e-9, \
            f"batch 3 {half}: {category} {caught}/{total} under {floor:.1%}; missed:\n{missed}"
    ordinary = [v for (kind, category), v in counts.items() if kind == "ordinary" and "/" not in category]
    flagged, total = sum(v[0] for v in ordinary), sum(v[1] for v in ordinary)
    assert flagged / total <= max_alarms + 1e-9, f"batch 3 {half}: {flagged}/{total} ordinary texts flagged:\n" + \
        "\n".join(f"  [{r['category']}/{r['lang']}] {r['text']}  <- {rule}" for r, rule in result["alarms"])


def test_batch3_halves_are_a_stratified_split_of_the_batch():
    whole, dev, heldout = (load_batch(BATCH3 / f"batch3{s}.tsv") for s in ("", "_dev", "_heldout"))
    key = lambda r: (r["kind"], r["category"], r["lang"], r["text"])  # noqa: E731
    assert sorted(map(key, dev + heldout)) == sorted(map(key, whole))
    for stratum in {key(r)[:3] for r in whole}:
        n_dev = sum(key(r)[:3] == stratum for r in dev)
        n_held = sum(key(r)[:3] == stratum for r in heldout)
        assert abs(n_dev - n_held) <= 1, stratum


# A first-person danger statement wins over a third-person, prevention or denial reading in the same text.
PRECEDENCE = [
    # (ordinary on its own, the same with the writer's own danger statement)
    ("my counselor asked if I had thoughts of suicide",
     "my counselor asked if I had thoughts of suicide and honestly yes, every day"),
    ("my counselor asked if I was suicidal", "my counselor asked if I was suicidal. I am"),
    ("the doctor asked if i ever wanted to hurt myself", "the doctor asked if i ever wanted to hurt myself, i do"),
    ("they asked if I felt safe", "they asked if I felt safe and I said no"),
    ("my friend said she wanted to die", "my friend said she wanted to die and honestly I want to die too"),
    ("my friend said she wanted to die", "my friend said she wanted to die. me too"),
    ("my friend wants to die", "my friend wants to die and so do i"),
    ("my sister overdosed last year", "my sister overdosed last year and now I want to overdose too"),
    ("my uncle took his own life", "my uncle took his own life and i think about doing the same"),
    ("my brother overdosed", "my brother overdosed and honestly i wish it was me"),
    ("lost my brother to suicide", "lost my brother to suicide and I want to join him in heaven"),
    ("ma soeur s'est suicidée", "ma soeur s'est suicidée pis j'ai envie de la rejoindre"),
    ("ma soeur a fait une overdose", "ma soeur a fait une overdose pis moi aussi je veux mourir"),
    ("mon intervenante m'a demandé si j'avais des idées suicidaires",
     "mon intervenante m'a demandé si j'avais des idées suicidaires, j'ai dit oui"),
    ("the group talked about suicide prevention",
     "we talked about suicide prevention in group and I think about it every day"),
    ("the nurse did the suicide screening",
     "the nurse did the suicide screening and I told her I've been planning to kill myself"),
    ("no I'm not suicidal", "no I'm not suicidal, I just want to die"),
    # batch 4's false alarms, now contexts: a side-effect warning, a course unit, a survived overdose, a denial
    ("the pharmacist said suicidal thoughts are a rare side effect of this med",
     "the pharmacist said suicidal thoughts are a rare side effect of this med. i have them every day and i want to die"),
    ("we have an exam on suicide risk", "we have an exam on suicide risk and honestly i am suicidal"),
    ("overdose anniversary today", "overdose anniversary today and i want to overdose again"),
    ("je voulais pas en finir", "je voulais pas en finir avant mais là je veux mourir"),
    ("sorry my last message sounded weird", "sorry my last message sounded weird. i am going to kill myself tonight"),
    ("not suicidal", "not suicidal but honestly I am"),
    ("I said I wasn't suicidal", "I said I wasn't suicidal but I lied"),
    ("j'pense pas au suicide", "j'pense pas au suicide mais je veux mourir"),
    ("je veux pas mourir", "je veux pas mourir mais je vois pas d'autre solution"),
    ("i dont want to die", "i dont want to die but i cant keep living like this"),
    ("I'm not going to do anything tonight",
     "I'm not going to do anything tonight, but I keep thinking how much easier it would be for everyone "
     "if I just wasn't here"),
    ("no thoughts of suicide", "no thoughts of suicide until last night, now I want to die"),
    ("I'm not suicidal", "I'm not suicidal. I took 40 pills"),
    # batch 4's new denials, trips away, jokes and another person's funeral
    ("self harm: no. mood: ok", "self harm: no. mood: ok. honestly i want to die"),
    ("no self harm, no urges this week", "no self harm, no urges this week. but i bought a rope"),
    ("i used to want to die but not anymore", "i used to want to die but not anymore. until tonight, i took 40 pills"),
    ("suicide isn't an option for me", "suicide isn't an option for me, i just want to go to sleep and never wake up"),
    ("j'ai pas le goût de mourir", "j'ai pas le goût de mourir mais j'ai écrit mes lettres, elles sont sur la table"),
    ("my brother keeps saying he won't be here much longer",
     "my brother keeps saying he won't be here much longer. me neither, i won't be around for the next check in"),
    ("my friend's funeral is tomorrow, overdose", "my friend's funeral is tomorrow, overdose. i'm next"),
    ("this meeting is so boring i want to kill myself lol",
     "this meeting is so boring i want to kill myself lol. no but seriously i have a plan and the date"),
    ("I won't be around next week, I'm on vacation", "I won't be around next week, I'm on vacation. then i'll take all my pills at once"),
]


@pytest.mark.parametrize("ordinary, danger", PRECEDENCE)
def test_a_first_person_danger_statement_wins_over_another_reading(ordinary, danger):
    assert detect(ordinary) is None, detect(ordinary)
    assert detect(danger) is not None, crisis.explain(danger)


@pytest.mark.parametrize("text", [
    "my family would be better off without me",          # "my family" is not another person's words
    "my kids said they'd be better off when I'm gone",    # a danger phrase that only starts in a context
    "someone told me to kill myself and I think I will",
    "ma mère pense que ça va mieux mais j'ai envie de mourir",
    "im not going to kill myself tonight",                # "not ... tonight" is no denial
    "not suicidal yet",
    "i dont think about suicide as much but still every day",
])
def test_what_only_looks_like_a_context_is_still_caught(text):
    assert detect(text) is not None, crisis.explain(text)


@pytest.mark.parametrize("text", [
    "my friend said she wanted to die, what should I do", "my buddy od'd on purpose last month, he survived",
    "lost my best friend to suicide in 2019", "mon père s'est suicidé quand j'étais jeune",
    "ma coloc m'a texté qu'elle voulait en finir", "how do i help someone who says they are suicidal",
    "the group talked about suicide prevention today", "they gave us a card with the suicide hotline",
    "my psychiatrist asks me the same questions about wanting to die every visit",
    "l'infirmière m'a posé les questions sur le suicide", "on a appris les signes avant-coureurs du suicide",
    "i got a naloxone kit in case someone overdoses", "my doctor screened me for suicide risk, all good",
    "no I'm not suicidal, just tired", "sad yes, suicidal no", "no thoughts of suicide or self harm",
    "i would never kill myself, my kids need me", "j'ai pas d'idées suicidaires", "je pense pas à me tuer",
    "non je vais pas me faire de mal", "my counselor asked if I had thoughts of suicide and i said no",
])
def test_other_people_prevention_and_denials_do_not_trigger(text):
    assert detect(text) is None, (detect(text), crisis.explain(text))


def test_explain_names_the_contexts_found():
    found = crisis.explain("my friend said she wanted to die. me too")
    assert "other.person_said" in found["contexts"] and found["match"].rule == "any.me_too"



# The kinds batch 4 showed missing, in words written for these tests (not copied from any batch): each is a
# family of phrasings the rules were widened for, so one example per family stands for its neighbours.
@pytest.mark.parametrize("text", [
    # plans, means and acts told without a verb of dying
    "just swallowed all my meds like 10 minutes ago", "j'ai avalé toutes mes pilules y'a 15 minutes",
    "been burning my legs with cigarettes again", "cut my arms with a razor last night, gonna do it again",
    "been cutting my thighs every night this week", "Im in the bathtub with a razor",
    "gonna drive off the bridge on the way home", "thinking about walking into traffic",
    "i've got the pills. just need the courage", "been staring at the rope for an hour",
    "j'en ai assez de mes pilules pour le faire", "ive got it all planned out. tonight",
    # using again or overdosing on purpose, to stop for good
    "one last shot and i'm done for good", "i'm going to relapse on purpose so it stops for good",
    "im just going to use until it all goes black", "bought a bunch of fent, gonna do it all",
    "je vais consommer jusqu'à temps que mon coeur lâche", "je vais faire une grosse dose pis que ça finisse",
    # farewells and future absence
    "you won't see me at the 6 month check in", "make sure my stuff goes to my sister, i won't be here to sort it",
    "thank you for caring about me all this time. farewell", "mes lettres sont prêtes, elles sont dans le tiroir",
    "vous me reverrez pu", "merci pour tout, vous allez pu avoir de mes nouvelles",
    "qui va s'occuper de mon chat après", "if i'm not around next month, that's why",
    "i'm sorry for everything. i love you all", "it was nice knowing you", "c'est ma dernière fin de semaine",
    "cant see myself making it to christmas", "jme vois pas passer l'hiver", "going to be with my mom soon",
    # hopelessness with no verb of dying
    "no hope left. just tired", "there's no future for someone like me", "y'a pu rien pour moi icitte",
    "there's nothing left to stay for", "can't face another morning like this", "je vois pas d'autre solution",
    "chu pu capable d'une autre journée de même", "ça vaut pu la peine de continuer", "j'ai pu rien à perdre",
    "i'll be at peace soon", "this pain will be over soon. one way or another",
    # burden, others better off
    "i'm a waste of space and everyone knows it", "they'll all be relieved soon",
    "tout le monde va être mieux bientôt, promis", "the life insurance will take care of my family",
    "ma famille va être correcte avec l'assurance vie", "the world doesn't need another addict",
    "bientôt je vais pu déranger personne", "i've been thinking everyone would be fine without me",
    "je me scarifie pas mal ces temps-ci",  # Québécois 'pas mal': quite a lot, not a denial
    "I won't be here much longer. rehab didn't work, nothing works",  # rehab named, but no stay away
    # batch 4's held-out misses, one family each (written for these tests, not copied from the batch)
    # a blade at hand, about to cut
    "got the blade out, ready to do it", "holding a knife, about to cut again", "j'ai le rasoir dans la main, je vais me couper",
    # jumping off a high place, slitting wrists, as a thought
    "been up on the roof all night thinking about jumping off", "i keep thinking about jumping off", "je pense à sauter du pont",
    "all i think about is slicing my wrists open", "can't get the thought of opening my wrists out of my head",
    # no point in anything, none of it matters
    "theres no point in any of it anymore", "none of it matters anymore", "plus rien a de sens",
    # belongings given away and the time right, or handed out one by one
    "gave my dog and my tools to my cousin. it's time", "i've given away all my records, feels like the right time",
    "ma guitare va à ma soeur, mon vélo à mon neveu",
    # a dead loved one waiting for them
    "i want to see my dad again. he's waiting for me", "my brother is waiting for me on the other side",
    "je veux rejoindre ma mère, elle m'attend",
    # a last word passed on: 'tell X I tried', 'if something happens to me tell X I loved them'
    "tell my counselor i did my best", "dites à mon parrain que j'ai essayé", "tell everyone i tried so hard",
    "si y m'arrive quelque chose dis à ma fille que je l'aimais", "if anything happens to me tell my dad i loved him",
    # disappearing unnoticed
    "no one would even notice if i disappeared", "if i vanished tomorrow nobody would notice",
    "personne se rendrait compte si je disparaissais",
    # using everything at once, never to feel again
    "shooting up all i have left tonight", "i never want to feel anything again", "je veux plus rien ressentir, plus jamais",
    # giving up on oneself
    "i've given up on myself", "i give up on me", "j'abandonne. sur moi",
    # the survey or texts not needed after a near date, nobody to answer
    "i won't need these check ins after friday", "j'aurai pu besoin du sondage après demain",
    "don't bother calling next week, no one will be here to answer",
    # bare words of despair, no tomorrow
    "worthless. trapped.", "sans espoir. pris au piège", "i don't see tomorrow",
    # nothing left, done
    "nothing left in me. i'm done", "il me reste pu rien. chu fini",
    # using again with no coming back
    "next time i use it's all in, no way back", "si je consomme encore c'est sans retour",
    # insulin is a means like pills (an author probe, 'took all my insulin', showed it missing)
    "took all my insulin about 20 min ago", "j'ai pris toute mon insuline d'un coup",
])
def test_batch4_kinds_are_caught(text):
    assert detect(text) is not None, crisis.explain(text)


@pytest.mark.parametrize("text", [
    # away for an ordinary reason
    "I won't be around for the next survey, going on vacation", "je serai pas là lundi, j'ai un rendez-vous",
    "i won't be around next week, i have court in montreal", "je vous dis adieu, je déménage en Gaspésie!",
    "i won't be here next week, i'm going into detox", "je serai pas là la semaine prochaine, je rentre en thérapie",
    # the same words in ordinary life
    "took all my pills this morning like the doctor said", "i cut my hand with a knife cooking supper",
    "i wrote letters to my family during treatment, it helped", "i left my letters on the table for the mailman",
    "my family will be fine, the insurance covered the fire damage", "decided to go back to school. it's time",
    "my kids will be happier soon when we move to the new place", "thank you for your help, goodbye and happy holidays",
    "i don't see a way out of this debt", "j'ai pas d'autre choix que de travailler samedi",
    "cant do another day of this heat", "no future in that job for me", "tired of everything being so expensive",
    "i gave away my old phone, won't need it anymore", "je lâche la vie de party", "i wrote a goodbye letter to alcohol in group",
    # jokes laughed off
    "this meeting is so boring i want to kill myself lol", "if my boss calls one more time i'll jump out the window haha",
    "ce cours est tellement plate jveux mourir mdr",
    # denials, answers and a past said to be over
    "self harm: no. mood: ok", "suicidal thoughts: none. cravings: some", "no urges to use or to hurt myself",
    "i'm not having any thoughts of suicide", "i used to cut but i haven't in two years",
    "i used to want to die but not anymore", "avant je pensais au suicide mais plus maintenant",
    "suicide isn't an option for me, my kids need me", "j'ai pas le goût de mourir, juste de dormir",
    "non j'ai pas pensé à me faire du mal", "no plans to end my life, just struggling",
    "i'm not going to end it", "i don't feel like hurting myself", "the suicidal thoughts stopped when i got sober",
    "je me coupe plus depuis 6 mois", "i thought about using, not about killing myself",
    "l'infirmière m'a demandé si je pensais à me faire du mal, j'ai dit non",
    # prevention and screening
    "did the self harm screening with my counselor today", "the intake form had questions about suicide and self harm",
    "my therapist and i made a safety plan in case i ever feel suicidal",
    "they asked me at intake if i had ever attempted suicide", "l'intervenant nous a parlé des surdoses au fentanyl",
    # another person
    "my brother keeps saying he won't be here much longer, he's moving to BC",
    "one of the guys at the shelter cut his wrists, he's ok now", "mon voisin a sauté du pont",
    "my friend's funeral is tomorrow, overdose",
    # look-alikes of the families added for batch 4's held-out misses
    "the barber is about to cut my hair", "bought a new knife for the kitchen, about to cut the onions",
    "thinking about jumping off the diving board at the pool this summer", "i cut my wrist on a broken glass doing dishes",
    "no point in calling before 9, the office is closed", "it doesn't matter anymore, we found the keys",
    "gave away my old clothes, time for a new wardrobe", "i gave my brother my old bike",
    "my mom is waiting for me in the car", "i want to see my dad again at christmas",
    "tell my sponsor i tried calling him", "tell my mom i'll be home late",
    "nobody noticed when i left the party early", "i'm going to use everything i learned in group",
    "i gave up on the diet", "my parents never gave up on me",
    "i won't need the ride after this weekend, my car is fixed", "won't need the survey reminders after friday, i set an alarm",
    "tired. hungry. going to bed", "i can't see tomorrow's schedule on the app",
    "nothing left in the fridge, i'm done cooking for the week", "i used to shoot up, no coming back to that life for me",
    # batch 4's false alarms, as families: a side-effect warning, a course unit, a text that sounded wrong,
    # a denial in the past tense, an overdose survived
    "the pharmacist said suicidal thoughts are a rare side effect of this med. none so far",
    "we have an exam on suicide risk assessment tomorrow", "sorry my last message sounded weird, i'm fine, just tired",
    "je voulais pas en finir, j'ai juste pris trop", "i never wanted to die, i just wanted the pain to stop for a bit",
    "one year since my overdose today, so grateful",
    "i took my insulin this morning", "ran out of insulin, going to the pharmacy",
])
def test_batch4_look_alikes_do_not_trigger(text):
    assert detect(text) is None, (detect(text), crisis.explain(text))


@pytest.mark.parametrize("text", [
    "i'm so tired i want to die lol", "so depressed i want to kill myself lol", "tellement tanné jveux mourir mdr",
    "so over everything i want to die lol", "so stressed i want to die lol",
    "if i relapse one more time i'm going to kill myself lol",  # the writer's own act, not a chore
])
def test_a_joke_after_a_low_mood_is_no_joke(text):
    assert detect(text) is not None, crisis.explain(text)


# The settings batches 5 and 6 showed flagged (a story, treatment for it, skills for when it comes, a risk or a
# warning, a negated act, a past said to be over), in words written for these tests, each beside the same setting
# with the writer's own present danger after it, which must still be caught.
SETTINGS = [
    ("watched a documentary where a man overdoses in a motel",
     "watched a documentary where a man overdoses in a motel and i want that to be me"),
    ("the girl in the show cut her wrists", "the girl in the show cut her wrists. i cut again tonight"),
    ("my dbt group is for self harm and it helps", "my dbt group is for self harm but the urges are back"),
    ("seeing my psychiatrist about the dark thoughts i had last winter",
     "seeing my psychiatrist about the dark thoughts but they are getting worse"),
    ("the crisis line is there for when i feel like hurting myself",
     "the crisis line is there for when i feel like hurting myself. i want to die tonight"),
    ("pharmacist said my tolerance is lower now so higher risk of overdose",
     "pharmacist said my tolerance is lower now so higher risk of overdose. good, i want to overdose"),
    ("never mix benzos with alcohol, the nurse said", "never mix benzos with alcohol, the nurse said. i am going to tonight and not wake up"),
    ("didn't use, didn't cut myself, went to my meeting", "didn't use, didn't cut myself yet but i have the blade ready"),
    ("pas de surdose, pas de rechute, une bonne semaine", "pas de surdose, pas de rechute, mais je veux mourir"),
    ("back then i wanted to die. today i'm glad to be alive", "back then i wanted to die. today i want to die again"),
    ("i meant tired of my job, not tired of life", "i meant tired of my job. honestly also tired of life, i want to die"),
    ("shoot me an email with the next survey", "shoot me an email with the next survey, i won't be around for the one after"),
    ("we bought rope for the tent", "we bought rope for the tent and i kept some for myself tonight, it's ready"),
    ("i have never tried to kill myself and i never will", "i tried to kill myself and i never will again stop wanting to"),
    # batch 7 dev's false alarms, as families: exasperation at the week or the hour, a chore to be done with
    ("kill me now, it's only monday", "kill me now, it's only monday and i have the rope ready"),
    ("shoot me now its only 10am 🙄", "shoot me now its only 10am. i mean it, i want to die"),
    ("j'ai hâte d'en finir avec cette rénovation", "j'ai hâte d'en finir avec cette vie"),
    ("on va en finir avec le ménage du printemps demain", "je veux en finir avec le mal, ce soir c'est fini"),
    # batch 7 dev's direct misses, as a family: the means in hand or in front of them, or on the tracks, now
    ("got the knife in my hand, cutting the turkey", "got the knife in my hand"),
    ("le fusil de mon père est barré dans le garde-robe", "le fusil de mon père devant moi"),
    ("we walked along the old train tracks to the lake", "sitting on the train tracks near the river right now"),
    ("holding the razor over my sink to shave", "holding the razor over my wrist"),
    # batch 7 dev's indirect misses, as families: no more contact, surveys or fighting after a near day; a pet
    # given away who will be better off
    ("no need to text me after 8, im asleep", "no need to text me after saturday"),
    ("appelez-moi après mardi, je suis en congé", "m'appelez plus après mardi"),
    ("i won't make it to the next survey, my phone plan runs out", "pretty sure i won't make it to the next survey"),
    ("after tomorrow i won't have to fight with my landlord", "after tomorrow i won't have to fight anymore"),
    ("left my cat with my sister while i'm in detox, she'll take better care of him than the shelter",
     "left my cat with my sister. she'll take better care of him than i could"),
    ("gave my dog to my brother for the summer, he'll be better off with the big yard",
     "gave my dog to my brother, he'll be better off with him"),
    # a past danger, then a future being planned now (batch 7 dev's false alarm, as a family)
    ("two years ago i wanted to die, now i'm planning my return to school",
     "two years ago i wanted to die, now i'm planning my funeral"),
    ("l'an passé je voulais en finir, cette année on prépare notre mariage",
     "je veux en finir, cette année on prépare notre mariage pis c'est trop"),
    # a grief group or workshop after an overdose (batch 7 dev's false alarm, as a family)
    ("grief group after an overdose tonight, it helped", "grief group after an overdose tonight. i want to overdose too"),
    ("groupe de deuil après un suicide, ça m'a aidé", "groupe de deuil après un suicide, pis moi je veux me suicider ce soir"),
]


@pytest.mark.parametrize("ordinary, danger", SETTINGS)
def test_a_setting_is_ordinary_and_a_present_danger_after_it_is_not(ordinary, danger):
    assert detect(ordinary) is None, crisis.explain(ordinary)
    assert detect(danger) is not None, crisis.explain(danger)


# The indirect kinds batches 5 and 6 showed missing, in words written for these tests (not copied from a batch),
# one family a line or two, and the look-alikes each family was narrowed against.
@pytest.mark.parametrize("text", [
    # the last time answering, the next survey not needed, not being around for it
    "this will probably be my last time filling one of these out", "this is the last text you'll get from this number",
    "no need to send me the 6 month survey", "vous aurez pu besoin de m'écrire le mois prochain",
    "i don't expect to be around for the next one",
    # goodbye, then thanks for the whole time; farewells made
    "goodbye. thank you for all the calls this year", "j'ai dit mes adieux à ma famille hier",
    # affairs in order, and a calm after it
    "gave my guitar to my nephew and my dog to my neighbour. it's time", "sold all my stuff, cancelled my lease. i feel calm",
    "deleted all my accounts and gave away my clothes",
    # others better off if the writer were gone
    "if i disappeared my wife would finally be at peace", "take me out of the picture and everyone's fine",
    # using or taking to die, enough to, the one that does it
    "got enough fent to stop my heart", "hoping the next hit is the one that finally does it",
    "la prochaine fois que je shoote ce sera la dernière pour de bon", "j'ai pris mes pilules pour mourir",
    "im using to not wake up now, not to get high",
    # hopelessness without a verb of dying
    "what's the point.", "none of this will matter soon", "what if i just stopped existing, would anyone care",
    # a dead person, then going to be with them; instructions for after
    "my mom died in march. i'm ready to be with her", "ma blonde est morte l'an passé, je vais aller la rejoindre",
    "when i'm gone tell my sister she can have my car",
    # a means made ready, water, a crash sought, voices
    "i ran a bath and got the razor ready", "the voices say it's time", "going to drive into the guardrail on the 40",
    "gonna jump off the parkade tonight", "je me suis recoupée cette nuit", "je suis sur le bord du pont là",
    # the families added from the round written after them (after6_author_probes.tsv), in other words
    "tied my belt to the closet rod to see if it holds", "on my way to the overpass now",
    "sitting in my truck in the garage with the door shut, engine running", "honestly just tired of surviving",
    "j'ai pu la force de me battre", "give my place in the study to someone else", "my life will never get better",
    "sleeping forever sounds so peaceful", "left my keys and a letter on the table. thank you for trying",
    # and from the second round (after6_author_probes2.tsv), in other words
    "on the metro platform, thinking of jumping when it comes in", "looked up how many of my pills it would take to die",
    "quit my antidepressants two weeks ago and saved them up", "next time i use i'm not going to stop",
    "j'ai mélangé tout mon xanax avec du fort", "i can't see a point in waking up anymore",
])
def test_batch5_and_6_kinds_are_caught(text):
    assert detect(text) is not None, crisis.explain(text)


@pytest.mark.parametrize("text", [
    "is this the last survey? thanks", "this is the last text from this number, my new number is 514 555 0101",
    "no need to send me the 6 month survey by mail, i do it online", "you won't need to call me next month, i'll call you",
    "i don't expect to be around for the next one, i work nights that week", "goodbye and thanks, talk next month",
    "goodbye. thanks for the help with my housing forms", "j'ai fait mes adieux à mes collègues, je change de job",
    "gave my old bike to my nephew and my tools to my brother, finally ready for the move",
    "sold all my stuff, ready to start fresh out west", "deleted my facebook and gave my old phone to my mom, feels good",
    "paid off my debts! i'm so relieved", "my kids would be better off if i wasn't working nights",
    "if i died my kids would be lost, that's why i stay sober", "remove me from the list and everything is fine",
    "i used to not wake up for my alarm", "hoping the next job is the one", "whats the point of the 90 day survey",
    "nothing will matter soon except the exam", "my dad died last year. i'm going to see him at the cemetery sunday",
    "when i'm gone for the weekend my sister feeds the cat", "running a bath, my knife is out to cut the onions",
    "driving fast hoping something happens at the races", "j'ai tout réglé avec mon propriétaire, je suis soulagée",
    "on a sauté du quai avec les enfants",
    # the families added from the round written after them (after6_author_probes.tsv)
    "tied the dog's leash to the door handle", "walking to the bridge now to meet my cousin",
    "in my car in the garage warming it up, engine on, -30 out", "tired of fighting with my landlord",
    "i don't want to fight anymore with my ex, we signed the papers", "ça me tente pas d'essayer le nouveau groupe",
    "can you give my spot to someone else, i can't make tuesdays", "hope you find someone else for your study, i'm moving to alberta",
    "my life will never change if i don't get a job", "i could sleep forever after that shift",
    "thanks for trying, the office was closed anyway", "left a note for the mailman. thanks for trying to deliver it",
    # and from the second round (after6_author_probes2.tsv)
    "i always jump on when the bus comes, no ticket lol", "read an article about how many people die of overdoses every year",
    "my doctor said to stop the meds, i'm saving them for the pharmacy takeback", "at peace with my decision to quit my job",
    "next time i go to the gym i'm not stopping until i hit 10k", "this is my last answer for today, tired, talk tomorrow",
    "dans le film que j'ai vu le gars se pend à la fin, c'était intense",
    # a denial said again for the future (after6_author_probes2's denial, flagged by the model at 0.82)
    "i have never tried to kill myself and i never will", "j'ai jamais voulu mourir pis je le ferai jamais",
    "never wanted to die and never will",
])
def test_batch5_and_6_look_alikes_do_not_trigger(text):
    assert detect(text) is None, (detect(text), crisis.explain(text))


# Batch 8's dev half (benchmarks/crisis_eval/batch8_dev.tsv): its families, each in other words than the batch's,
# beside look-alikes that must stay ordinary.
@pytest.mark.parametrize("text", [
    "laying on the train tracks waiting for the 6 oclock", "je suis couchée sur la voie ferrée, j'attends le train",
    "dont bother with the 6 month survey i wont make it to 6 months", "i don't think i will make it to next month",
    "I won't need any more texts after tonight", "j'en aurai plus besoin après demain",
    "the pills make it quiet. gonna make it quiet forever", "wrote a letter and left it on my pillow",
    "i'm about to do something i can't undo", "found the tallest parking garage downtown",
    "if i died in my sleep it would honestly be a relief", "bye for good everyone", "merci pour tout. salut pour toujours",
    "they would all be fine without me", "mes enfants seraient bien sans moi",
    # a danger after a past said to be over, or after a denial, still counts
    "last year i wanted to end it but i'm in a better place now. tonight i want to end it again",
    "i'm not trying to overdose tonight", "the suicidal thoughts from before are back",
])
def test_batch8_kinds_are_caught(text):
    assert detect(text) is not None, crisis.explain(text)


@pytest.mark.parametrize("text", [
    "i wanted to die two years ago but now i'm doing much better", "j'étais suicidaire avant mais là ça va mieux",
    "i thought about ending it last spring but now i want to live for my kids",
    "i'm not trying to overdose, just using less", "pas de surdose volontaire, juste une erreur de dose",
    "a stranger overdosed on the bus and i gave him narcan", "my wife keeps my meds so i don't take too many",
    "my counsellor and i reviewed my suicidal thoughts from before and my safety plan",
    "waiting on the platform for the 8:15 train", "i won't make it to the 6 month appointment, i work that day",
    "won't need the texts after friday because i'm moving, i'll email you", "make it quiet for good, the neighbours dog",
    "wrote a note and left it on the table for my roommate about the rent", "about to do something i can't take back: a tattoo",
    "looked up the tallest building in the world for my kid's homework", "if i died in my sleep my kids would be lost",
    "they'll be fine without me for the weekend", "bye for now, talk next month", "good night!",
])
def test_batch8_look_alikes_do_not_trigger(text):
    assert detect(text) is None, (detect(text), crisis.explain(text))


@pytest.mark.parametrize("text, look_alike", [
    ("my therapist talked about my suicidal thoughts from before, they are back",
     "my therapist talked about my suicidal thoughts from before, they are not back"),
    ("j'en ai parlé à ma psy, mes idées suicidaires, elles sont revenues",
     "j'en ai parlé à ma psy, mes idées suicidaires d'avant, c'est fini"),
    ("we talked about my dark thoughts in group, they came back last night",
     "we talked about my dark thoughts in group, life is back to normal"),
])
def test_thoughts_said_to_be_back_after_treatment_talk_are_caught(text, look_alike):
    assert detect(text) is not None, crisis.explain(text)
    assert detect(look_alike) is None, (detect(look_alike), crisis.explain(look_alike))
