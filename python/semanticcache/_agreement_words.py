"""The word lists of the agreement check (:mod:`semanticcache._agreement`): kept apart so
that the rules stay readable and the lists easy to extend."""

from __future__ import annotations

from typing import Final


def _word_set(words: str) -> frozenset[str]:
    """A set of words written as one space-separated string (easier to read and edit)."""
    return frozenset(words.split())


NEGATIONS: Final = _word_set("not no never without cannot none nobody nothing neither nor")

# Capitalised words that are not names: function words and question words that open
# titles and clauses ("What Is The Best...", "Who are Some of the...").
NOT_NAMES: Final = _word_set(
    """
    i i'm i've i'd i'll me my mine we our us you your yours he him his she her it its
    they them their what how why who whom whose when where which is are was were be been
    being am can could do does did should shall will would may might must have has had
    the a an in on at of to and or but for from by with as about into over after before
    than then so if this that these those there here some any all most more much many
    very just also only not no please vs versus etc hi hello dear
    """
)

# Pairs of words whose swap changes the answer. Inflected forms are listed where they are
# common in questions ("closed", "excluding"): words are compared as written.
OPPOSITES: Final = (
    ("good", "bad"),
    ("best", "worst"),
    ("better", "worse"),
    ("for", "against"),
    ("pros", "cons"),
    ("advantage", "disadvantage"),
    ("advantages", "disadvantages"),
    ("more", "less"),
    ("most", "least"),
    ("maximize", "minimize"),
    ("maximum", "minimum"),
    ("max", "min"),
    ("increase", "decrease"),
    ("increases", "decreases"),
    ("increasing", "decreasing"),
    ("positive", "negative"),
    ("before", "after"),
    ("earlier", "later"),
    ("earliest", "latest"),
    ("early", "late"),
    ("under", "over"),
    ("above", "below"),
    ("inside", "outside"),
    ("upper", "lower"),
    ("uppercase", "lowercase"),
    ("top", "bottom"),
    ("high", "low"),
    ("higher", "lower"),
    ("highest", "lowest"),
    ("rich", "poor"),
    ("men", "women"),
    ("man", "woman"),
    ("male", "female"),
    ("boy", "girl"),
    ("boys", "girls"),
    ("buy", "sell"),
    ("send", "receive"),
    ("lend", "borrow"),
    ("gain", "lose"),
    ("win", "lose"),
    ("profit", "loss"),
    ("pass", "fail"),
    ("easy", "hard"),
    ("easiest", "hardest"),
    ("cheap", "expensive"),
    ("legal", "illegal"),
    ("true", "false"),
    ("love", "hate"),
    ("start", "stop"),
    ("old", "new"),
    ("old", "young"),
    ("older", "younger"),
    ("oldest", "newest"),
    ("first", "last"),
    ("past", "future"),
    ("north", "south"),
    ("east", "west"),
    ("up", "down"),
    ("import", "export"),
    ("upload", "download"),
    ("input", "output"),
    ("encrypt", "decrypt"),
    ("encryption", "decryption"),
    ("open", "close"),
    ("open", "closed"),
    ("opens", "closes"),
    ("opened", "closed"),
    ("opening", "closing"),
    ("include", "exclude"),
    ("included", "excluded"),
    ("including", "excluding"),
    ("add", "remove"),
    ("added", "removed"),
    ("adding", "removing"),
    ("accept", "reject"),
    ("accepted", "rejected"),
    ("enable", "disable"),
    ("enabled", "disabled"),
    ("allow", "forbid"),
    ("allowed", "forbidden"),
    ("push", "pull"),
    ("take", "avoid"),
    ("arrive", "depart"),
    ("arrival", "departure"),
    ("enter", "exit"),
    ("ascending", "descending"),
    ("forward", "backward"),
    ("private", "public"),
    ("internal", "external"),
    ("hot", "cold"),
    ("alive", "dead"),
    ("asleep", "awake"),
    ("strong", "weak"),
    ("strengths", "weaknesses"),
    ("big", "small"),
    ("bigger", "smaller"),
    ("larger", "smaller"),
    ("biggest", "smallest"),
    ("largest", "smallest"),
    ("long", "short"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("like", "dislike"),
    ("success", "failure"),
    ("successful", "unsuccessful"),
)

# The rest of the word must be at least this long: "into" is not "not to", and "undo" /
# "do" is left to the model.
MIN_STEM: Final = 4

# Words that start like a negating prefix followed by another word but do not negate it
# ("inside" is not "not side"). Each entry is a regular expression matched at the start
# of a word, so "discover" also covers "discovered".
NOT_PREFIX_NEGATIONS: Final = _word_set(
    r"""
    inbound inbox inborn income incoming incorporat indeed indent indoor inflammab
    inform(?!al) influx ingrain ingrown inhal injunct injur inland inline innate inside
    insight install instance instead instill instruct insur intact intake intend intens
    intent intern intuit invaluab invent invers invest invoice inward
    immediat immigra impact impair impart impeach impend implant import impos(?!sib)
    impound impress imprint imprison improv impulse
    disappoint discard discern discharg disclos discount discours discover discuss
    disease dismiss disorder dispatch displac display dispos dissent dissolv distract
    distribut
    union unless
    """
)

# Words that join two terms in a direction: "from Paris to Rome", "Celsius into
# Fahrenheit".
DIRECTION_WORDS: Final = _word_set("to into")
# Words of a symmetric relation: "compare Python to Java" asks what "compare Java to
# Python" asks. A text that holds one is not checked for direction. Distances and time
# differences are not among them: "how far is it to drive from A to B" may differ from
# "from B to A", and the time difference changes sign.
SYMMETRIC_RELATIONS: Final = _word_set(
    "compare compared comparing comparison similar between vs versus relation relationship"
)
# A term of a direction is at most this many words ("Los Angeles", "New York City").
DIRECTION_TERM_WORDS: Final = 3
