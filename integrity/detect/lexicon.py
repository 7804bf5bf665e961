"""The words the text detectors know, in one place: function words, number words, the hedges
of unsure answers, and the parts judge and preference data are written from.

Judge wording is recognised compositionally, not as a phrase list: a judgement (better,
preferred, wins, outperforms, ranked, rated ...) about a response named as one of several
(response A, the second answer, output (b), assistant 2 ...), a verdict or ranking label
("Winner: 1", "[[B]]", "Ranking: B > A"), a rating label or a rating given to a response
("Score: 7/10", "Helpfulness: 4/5", "I'd rate this response 3 stars"), or the role words of
preference data ("chosen response", "rejected answer"). Morphological variants are part of
each pattern (prefer, prefers, preferred, preferable, preference).
"""

from __future__ import annotations

# English function words: never the claim an answer makes.
STOPWORDS: frozenset[str] = frozenset("""
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each either else
ever every few for from further had has have having he her here hers herself him himself his
how i if in into is it its itself just let me more most my myself neither nor not now of
off on once only or other our ours ourselves out over own per please same she should so some
such than that the their theirs them themselves then there these they this those through to
too under until up upon very was we were what when where whereabouts which while who whom
whose why will with within without would yet you your yours yourself yourselves s t d ll re
ve m o y isn aren wasn weren don doesn didn won wouldn shouldn couldn can't cannot
""".split())
# "yes" and "no" are answers: they are not among the function words above.
NUMBER_WORDS: dict[str, str] = {
    str(n): word for n, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split())
}

# Unsure answers: how rejected responses of preference pairs read, never a ground-truth label.
HEDGE_TERMS: tuple[str, ...] = (
    "i think", "i believe", "i guess", "i suppose", "i assume", "i'd say", "i would say",
    "i'm not sure", "im not sure", "not sure", "unsure", "not certain", "uncertain",
    "can't be certain", "cannot be certain", "can't be sure", "cannot be sure", "can't tell",
    "cannot tell", "hard to tell", "hard to say", "difficult to tell", "difficult to say",
    "not entirely sure", "not clear", "unclear", "my guess", "best guess", "if i had to guess",
    "at a guess", "probably", "possibly", "perhaps", "maybe", "might be", "might", "could be",
    "may be", "seems", "seem to", "it appears", "appears to", "appear to", "looks like",
    "look like", "likely", "presumably", "supposedly", "apparently", "roughly", "kind of",
    "sort of", "or so", "don't quote me", "i'm guessing", "guessing", "allegedly",
)

# What a judge calls the things it compares.
RESPONSE_NOUNS: tuple[str, ...] = (
    "response", "responses", "answer", "answers", "reply", "replies", "completion",
    "completions", "output", "outputs", "generation", "generations", "candidate", "candidates",
    "assistant", "assistants", "model", "models", "option", "options", "submission",
    "submissions", "summary", "summaries", "solution", "solutions", "version", "versions",
    "sample", "samples", "continuation", "continuations", "chatbot", "system", "bot",
)
# How it tells them apart.
RESPONSE_IDS: tuple[str, ...] = (
    "a", "b", "c", "d", "1", "2", "3", "4", "#1", "#2", "(a)", "(b)", "(1)", "(2)", "one",
    "two", "first", "second", "third", "former", "latter",
)
# Words that prefer one response over another ("preferred over the other answer").
PREFERENCE_WORDS: tuple[str, ...] = (
    "preferred", "preferable", "better", "worse", "superior", "inferior", "favored", "favoured",
    "chosen", "stronger", "weaker",
)
# Judgement words (stems; each pattern allows the usual endings).
JUDGEMENT_STEMS: tuple[str, ...] = (
    r"better", r"worse", r"best", r"worst", r"prefer(?:s|red|able|ably|ence|ring)?",
    r"dispreferred", r"superior(?:ity)?", r"inferior(?:ity)?", r"stronger", r"weaker",
    r"strongest", r"weakest", r"wins?", r"won", r"winners?", r"winning", r"los(?:e|es|t|er|ing)",
    r"beats?", r"outperform(?:s|ed|ing)?", r"outshines?", r"surpass(?:es|ed)?",
    r"favou?r(?:s|ed|able|ite)?", r"chos(?:e|en)", r"choose[sn]?", r"choice", r"picks?",
    r"picked", r"selects?", r"selected", r"rank(?:s|ed|ing)?", r"ties?", r"tied", r"edges? out",
    r"more (?:helpful|accurate|correct|relevant|complete|detailed|concise|informative|"
    r"appropriate|useful|precise|faithful|harmless|honest)",
    r"less (?:helpful|accurate|correct|relevant|complete|detailed|concise|informative|"
    r"appropriate|useful|precise|faithful|harmless|honest)",
    r"higher[- ]quality", r"lower[- ]quality", r"ahead", r"wins? out", r"comes? out ahead",
    r"preferable", r"recommended",
)
# Role words of preference data before a response noun: "chosen response", "rejected answer".
ROLE_WORDS: tuple[str, ...] = (
    "chosen", "rejected", "preferred", "dispreferred", "winning", "losing", "selected",
    "accepted", "better", "best", "worse", "worst", "favored", "favoured", "positive",
    "negative", "gold", "reference",
)
# Labels a judge writes before a verdict or a rating.
VERDICT_LABELS: tuple[str, ...] = (
    "verdict", "final verdict", "winner", "preferred", "preference", "ranking",
    "judgement", "judgment", "better response", "best response", "comparison result",
)
RATING_LABELS: tuple[str, ...] = (
    "rating", "score", "grade", "overall", "overall score", "quality", "quality score",
    "helpfulness", "accuracy", "relevance", "correctness", "harmlessness", "honesty",
    "coherence", "fluency", "faithfulness", "instruction following", "reward",
)
RATING_VERBS: tuple[str, ...] = ("rate", "rated", "rating", "score", "scored", "grade",
                                 "graded", "give", "gives", "award", "awarded")
