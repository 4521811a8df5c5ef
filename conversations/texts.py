"""Every text the service sends, in English and French.

Rules: the sender is ORG_NAME; no text names a diagnosis, a treatment
program, a hospital service or (in the invitation) a substance.  Each
rendered text stays under 320 characters (tested) and the README lists each
one's encoding and segment count (``sms.segments``).
"""
from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "invitation": {
        "en": "{org}: hello! It's time for your {days}-day check-in, {n} short questions by text. "
              "Reply YES to start or STOP to opt out.",
        "fr": "{org} : bonjour! C'est le moment de votre suivi de {days} jours, {n} courtes questions par texto. "
              "Répondez OUI pour commencer ou STOP pour vous désabonner.",
    },
    # The first invitation a patient ever receives also says where to get help at any hour (2 segments at most).
    "invitation_first": {
        "en": "{org}: hello! It's time for your {days}-day check-in, {n} short questions by text. "
              "Reply YES to start or STOP to opt out. Texts are not read 24/7: in a crisis call or text "
              "{crisis_line}, in an emergency {emergency}.",
        "fr": "{org} : bonjour! C'est le moment de votre suivi de {days} jours, {n} courtes questions par texto. "
              "Répondez OUI pour commencer ou STOP pour vous désabonner. Textos non lus 24 h sur 24 : en crise, "
              "appelez ou textez le {crisis_line}; urgence : {emergency}.",
    },
    "reminder": {
        "en": "{org}: a reminder about your {days}-day check-in ({n} short questions). "
              "Reply YES to start or STOP to opt out.",
        "fr": "{org} : petit rappel pour votre suivi de {days} jours ({n} courtes questions). "
              "Répondez OUI pour commencer ou STOP pour vous désabonner.",
    },
    # The weekly alliance check-in during a stay (outreach.care.sms): same keywords; the first text a patient ever
    # receives also says where to get help at any hour.
    "checkin_invitation": {
        "en": "{org}: hello! Time for this week's check-in, {n} short statements to rate 0 to 6 by text. "
              "Reply YES to start or STOP to opt out.",
        "fr": "{org} : bonjour! C'est le moment du bilan de la semaine, {n} courts énoncés à noter de 0 à 6 par "
              "texto. Répondez OUI pour commencer ou STOP pour vous désabonner.",
    },
    "checkin_invitation_first": {
        "en": "{org}: hello! Time for this week's check-in, {n} short statements to rate 0 to 6 by text. "
              "Reply YES to start or STOP to opt out. Texts are not read 24/7: in a crisis call or text "
              "{crisis_line}, in an emergency {emergency}.",
        "fr": "{org} : bonjour! C'est le moment du bilan de la semaine, {n} courts énoncés à noter de 0 à 6. "
              "Répondez OUI pour commencer ou STOP pour vous désabonner. Textos non lus 24 h sur 24 : en crise, "
              "appelez ou textez le {crisis_line}; urgence : {emergency}.",
    },
    "checkin_reminder": {
        "en": "{org}: a reminder about this week's check-in ({n} short statements). "
              "Reply YES to start or STOP to opt out.",
        "fr": "{org} : petit rappel pour le bilan de la semaine ({n} courts énoncés). "
              "Répondez OUI pour commencer ou STOP pour vous désabonner.",
    },
    "consent_again": {
        "en": "Reply YES to start or STOP to opt out.",
        "fr": "Répondez OUI pour commencer ou STOP pour vous désabonner.",
    },
    "declined": {
        "en": "OK, no problem. If you change your mind in the next few days, reply YES.",
        "fr": "D'accord, pas de problème. Si vous changez d'avis d'ici quelques jours, répondez OUI.",
    },
    "stalled": {
        "en": "{org}: still there? {question}",
        "fr": "{org} : toujours là? {question}",
    },
    "retry": {
        "en": "Sorry, I didn't understand. Please reply with one number from {lo} to {hi}, or SKIP.",
        "fr": "Désolé, je n'ai pas compris. Répondez avec un seul nombre de {lo} à {hi}, ou PASSER.",
    },
    "completed": {
        "en": "Thank you, that's all! Your answers are saved. Reply STOP at any time to opt out. "
              "Texts are not read 24/7: in a crisis call or text {crisis_line}, in an emergency {emergency}.",
        "fr": "Merci, c'est tout! Vos réponses sont enregistrées. Répondez STOP en tout temps pour vous désabonner. "
              "Textos non lus 24 h sur 24 : en crise, appelez ou textez le {crisis_line}; urgence : {emergency}.",
    },
    "already_done": {
        "en": "Thanks, your answers are already saved. No need to reply.",
        "fr": "Merci, vos réponses sont déjà enregistrées. Pas besoin de répondre.",
    },
    "closed": {
        "en": "Thanks for your message. This check-in is now closed.",
        "fr": "Merci de votre message. Ce suivi est maintenant terminé.",
    },
    "help": {
        "en": "{org}: follow-up texts for a research study. Questions? Call {contact}. "
              "Reply SKIP to skip a question, STOP to opt out. Texts are not read 24/7: in a crisis call or text "
              "{crisis_line}, in an emergency {emergency}.",
        "fr": "{org} : textos de suivi pour une étude de recherche. Questions? Appelez le {contact}. "
              "Répondez PASSER pour sauter une question, STOP pour vous désabonner. Textos non lus 24 h sur 24 : "
              "en crise, appelez ou textez le {crisis_line}; urgence : {emergency}.",
    },
    # Once in a conversation, after a personal message that was not an answer (with the question asked again).
    "crisis_line_note": {
        "en": "Texts here are not read around the clock. If you need help now, call or text {crisis_line}.",
        "fr": "Les textos ne sont pas lus en tout temps. Si vous avez besoin d'aide maintenant, appelez ou textez "
              "le {crisis_line}.",
    },
    "media_only": {
        "en": "Sorry, we can only read text replies.",
        "fr": "Désolé, nous pouvons seulement lire les réponses écrites.",
    },
    "opted_out": {
        "en": "{org}: you will not get any more texts from us. Reply START to get them again.",
        "fr": "{org} : vous ne recevrez plus de textos de notre part. Répondez START pour les recevoir de nouveau.",
    },
    "wrong_number": {
        "en": "{org}: sorry for the trouble. We will not text this number again.",
        "fr": "{org} : désolés du dérangement. Nous n'écrirons plus à ce numéro.",
    },
    "stays_stopped": {
        "en": "This number will not receive our texts. Nothing more is needed.",
        "fr": "Ce numéro ne recevra pas nos textos. Vous n'avez rien d'autre à faire.",
    },
    # STOP and START are about every text of the service (follow-ups and check-ins alike), and say so.
    "opted_in": {
        "en": "{org}: you will receive our texts again. Reply STOP to opt out.",
        "fr": "{org} : vous recevrez de nouveau nos textos. Répondez STOP pour vous désabonner.",
    },
    # The only answer a participant who withdrew from the study gets to their texts (a crisis text excepted): it
    # says nothing of the study's subject, asks nothing and offers nothing to reply.
    "withdrawn_ack": {
        "en": "{org}: thank you for your message. You have left the study and will not get study texts. "
              "If you need help now, call or text {crisis_line}.",
        "fr": "{org} : merci de votre message. Vous avez quitté l'étude et ne recevrez plus de textos de l'étude. "
              "Si vous avez besoin d'aide maintenant, appelez ou textez le {crisis_line}.",
    },
    "safety": {
        "en": "If you are thinking about suicide or are in crisis, call or text {crisis_line} now, any time. "
              "In an emergency call {emergency}. Our team will see your message.",
        "fr": "Si vous pensez au suicide ou vivez une crise, appelez ou textez le {crisis_line} maintenant, "
              "en tout temps. En cas d'urgence, composez le {emergency}. Notre équipe verra votre message.",
    },
}


def render(name: str, language: str, **values: object) -> str:
    table = TEXTS[name]
    return table.get(language, table["en"]).format(**values)
