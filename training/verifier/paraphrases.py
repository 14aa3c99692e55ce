"""Labelled paraphrase pairs generated from questions written for this project.

Quora's labels are strict and noisy: many of its "different" pairs want the same answer,
and a model trained on them alone scores plain rewordings ("How do I..." / "How can I...")
as doubtful. These pairs teach the two things a cache needs most:

- **same answer** (label true): one question put through two different wordings of its
  intent ("How do I X?" / "What's the easiest way to X?" / "how to X"), with the harmless
  surface changes people make (case, punctuation, a polite prefix);
- **other answer** (label false), worded alike on purpose: a sibling question that changes
  one slot (the object, the place, the tool, the attribute), and the same slot asked with
  another intent ("How long does it take to X?" / "How much does it cost to X?").

Every pair's two sides use different templates where the family has enough, so template
identity never predicts the label. Items are split 60/20/20 by item (a test item, with all
of its siblings, is never trained on); two templates per family are kept out of training.
None of the demo's questions (``semcache demo``) is among them.

    python -m training.verifier.paraphrases --out /work/train-out
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from training.verifier.common import DEFAULT_OUT, SPLITS, LabelledPair, write_generated

SEED: Final = 15

# --- intents: templates that ask one thing -------------------------------------------------
# {a}: an action ("renew a passport"); {x}: a noun phrase; {s}/{base}/{third}: a subject and
# its verb phrase (base and third-person forms); {t}/{p}: a thing and a purpose;
# {attr}/{e}: an attribute and an entity; {v}/{n}/{w}: past verb, agent noun, a work.

HOWTO: Final = (
    "How do I {a}?", "How can I {a}?", "How would I {a}?", "What's the best way to {a}?",
    "What is the easiest way to {a}?", "What are the steps to {a}?", "how to {a}",
    "How to {a}?", "Any tips on how to {a}?", "Can you explain how to {a}?",
    "Could you tell me how to {a}?", "I need to {a}. How do I do that?",
    "I want to {a}, what should I do?", "Is there a way to {a}?", "What should I do to {a}?",
    "Please explain how I can {a}.", "Best way to {a}?", "How do you {a}?",
    "How does one {a}?", "What's the right way to {a}?", "how can i {a}",
)  # fmt: skip
DURATION: Final = (
    "How long does it take to {a}?", "How much time does it take to {a}?",
    "How long will it take me to {a}?", "Roughly how long does it take to {a}?",
    "What's the usual time it takes to {a}?", "how long to {a}",
    "How many hours or days does it take to {a}?", "If I {a}, how long will it take?",
)  # fmt: skip
COST: Final = (
    "How much does it cost to {a}?", "What does it cost to {a}?",
    "How expensive is it to {a}?", "What's the price to {a}?", "how much to {a}",
    "Roughly how much money does it take to {a}?", "What should I budget to {a}?",
    "If I {a}, how much will I pay?",
)  # fmt: skip
WHAT_IS: Final = (
    "What is {x}?", "What's {x}?", "Can you explain what {x} is?", "What does {x} mean?",
    "What is meant by {x}?", "Explain {x}.", "Define {x}.", "What exactly is {x}?",
    "Could you explain {x} to me?", "Tell me what {x} is.", "what is {x}",
    "I keep hearing about {x}. What is it?", "In simple terms, what is {x}?",
)  # fmt: skip
DIFFERENCE: Final = (
    "What is the difference between {x} and {y}?", "How is {x} different from {y}?",
    "How do {x} and {y} differ?", "{X} vs {y}: what's the difference?",
    "What's the difference between {y} and {x}?", "How does {x} differ from {y}?",
    "In what ways are {x} and {y} different?", "difference between {x} and {y}",
    "Can you explain how {y} and {x} are different?", "{X} or {y}: how are they different?",
)  # fmt: skip
CAUSE: Final = (
    "Why does {s} {base}?", "What makes {s} {base}?", "What causes {s} to {base}?",
    "How come {s} {third}?", "Why is it that {s} {third}?",
    "What is the reason {s} {third}?", "Can someone explain why {s} {third}?",
    "why does {s} {base}", "Any idea why {s} {third}?", "What's the reason that {s} {third}?",
)  # fmt: skip
RECOMMEND: Final = (
    "What is the best {t} for {p}?", "Which {t} is best for {p}?",
    "What {t} would you recommend for {p}?", "Which {t} should I get for {p}?",
    "What's a good {t} for {p}?", "Can you recommend a {t} for {p}?", "best {t} for {p}",
    "I'm looking for a {t} for {p}. Which one should I buy?",
    "What {t} do people recommend for {p}?", "Which {t} works best for {p}?",
)  # fmt: skip
ATTRIBUTE: Final = (
    "What is the {attr} of {e}?", "What's the {attr} of {e}?", "Tell me the {attr} of {e}.",
    "Do you know the {attr} of {e}?", "What is {e}'s {attr}?", "{attr} of {e}?",
    "Can you tell me what the {attr} of {e} is?", "I'd like to know the {attr} of {e}.",
)  # fmt: skip
WHO: Final = (
    "Who {v} {w}?", "Who was {w} {v} by?", "Who is the {n} of {w}?", "{W} was {v} by whom?",
    "Do you know who {v} {w}?", "Which person {v} {w}?", "who {v} {w}",
    "Who's the {n} of {w}?", "Can you tell me who {v} {w}?",
)  # fmt: skip

# --- items: each tuple holds siblings, questions worded alike that want other answers ----

ACTIONS: Final = (  # asked with HOWTO; the first few also with DURATION and COST
    ("renew a passport", "renew a driving licence", "replace a lost passport"),
    ("replace a car battery", "replace a car tyre", "charge a car battery"),
    ("paint a bedroom", "paint a kitchen cabinet", "wallpaper a bedroom"),
    ("learn to play the guitar", "learn to play the piano", "tune a guitar"),
    ("install solar panels on a house", "clean solar panels on a house",
     "install a heat pump in a house"),
    ("build a wooden deck", "stain a wooden deck", "build a wooden fence"),
    ("get a root canal", "get a tooth implant", "whiten my teeth"),
    ("ship a parcel overseas", "track a parcel overseas", "ship a car overseas"),
    ("remove a red wine stain from a carpet", "remove a red wine stain from a shirt",
     "remove a coffee stain from a carpet"),
    ("unclog a bathroom sink", "unclog a toilet", "fix a leaking bathroom sink"),
    ("reset a wifi router", "update the firmware of a wifi router", "reset an iPhone"),
    ("make a cold brew coffee", "make an iced tea", "make an espresso without a machine"),
    ("merge two PDF files", "split a PDF file", "compress a PDF file"),
    ("export a spreadsheet to CSV", "import a CSV into a spreadsheet",
     "export a spreadsheet to PDF"),
    ("remove duplicates from a Pandas dataframe", "drop empty rows from a Pandas dataframe",
     "remove duplicates from an SQL table"),
    ("read a JSON file in Go", "write a JSON file in Go", "read a YAML file in Go"),
    ("rename a column in PostgreSQL", "drop a column in PostgreSQL", "rename a table in MySQL"),
    ("center a div horizontally with CSS", "center a div vertically with CSS",
     "center an image horizontally with CSS"),
    ("squash the last three commits", "revert a pushed merge commit", "rebase onto main"),
    ("free up disk space on a Mac", "free up memory on a Mac", "free up disk space on Windows"),
    ("plant tomato seedlings outdoors", "prune tomato plants", "plant potatoes in a container"),
    ("train a puppy to sit", "train a puppy to walk on a lead", "train a cat to use a litter box"),
    ("apply for a mortgage", "pay off a mortgage early", "apply for a car loan"),
    ("file a tax return as a freelancer", "amend a tax return", "file a tax return for a company"),
    ("season a cast iron pan", "clean a rusty cast iron pan", "season a carbon steel wok"),
    ("jump start a car", "push start a motorbike", "tow a car"),
    ("write a cover letter for an internship", "write a resignation letter",
     "write a cover letter for a career change"),
    ("set up two factor authentication on Gmail", "turn off two factor authentication on Gmail",
     "set up two factor authentication on Instagram"),
    ("descale a kettle", "descale a coffee machine", "clean the inside of a microwave"),
    ("grow basil indoors", "grow mint indoors", "dry fresh basil"),
    ("back up an Android phone", "restore an Android phone from a backup",
     "back up a Windows laptop"),
    ("bleed a radiator", "balance radiators in a house", "replace a radiator valve"),
)  # fmt: skip
ACTIONS_WITH_COST_AND_TIME: Final = 12

TERMS: Final = (  # asked with WHAT_IS; the pairs (first two) with DIFFERENCE
    ("a Roth IRA", "a traditional IRA"), ("inflation", "deflation"), ("mitosis", "meiosis"),
    ("a black hole", "a neutron star"), ("machine learning", "deep learning"),
    ("an index fund", "a hedge fund"), ("TCP", "UDP"), ("a virus", "a bacterium"),
    ("latency", "bandwidth"), ("a recession", "a depression"), ("weather", "climate"),
    ("an alligator", "a crocodile"), ("a stock", "a bond"), ("RAM", "ROM"),
    ("an LLC", "a sole proprietorship"), ("baking soda", "baking powder"),
    ("a simile", "a metaphor"), ("an epidemic", "a pandemic"), ("a comet", "an asteroid"),
    ("affect", "effect"), ("a crypto wallet", "a crypto exchange"),
    ("Docker", "a virtual machine"), ("a debit card", "a credit card"),
    ("an allergy", "an intolerance"), ("a psychologist", "a psychiatrist"),
    ("nuclear fission", "nuclear fusion"), ("GDP", "GNP"), ("a lake", "a pond"),
)  # fmt: skip

CAUSES: Final = (  # (subject, base form, third person); siblings per tuple
    (("the sky", "look blue", "looks blue"), ("the sunset", "look red", "looks red"),
     ("the ocean", "look blue", "looks blue")),
    (("my cat", "knead blankets", "kneads blankets"), ("my dog", "lick my feet", "licks my feet"),
     ("my cat", "bring me dead mice", "brings me dead mice")),
    (("bread", "go stale", "goes stale"), ("bread", "go mouldy", "goes mouldy"),
     ("cheese", "go mouldy", "goes mouldy")),
    (("my laptop", "get hot when gaming", "gets hot when gaming"),
     ("my laptop", "get slow when gaming", "gets slow when gaming"),
     ("my phone", "get hot when charging", "gets hot when charging")),
    (("ice", "float on water", "floats on water"), ("oil", "float on water", "floats on water"),
     ("a steel ship", "float on water", "floats on water")),
    (("the moon", "change shape", "changes shape"), ("the moon", "look orange", "looks orange"),
     ("the sun", "change colour at sunset", "changes colour at sunset")),
    (("my car", "pull to the left", "pulls to the left"),
     ("my car", "shake when braking", "shakes when braking"),
     ("my bike", "pull to the left", "pulls to the left")),
    (("coffee", "make me sleepy", "makes me sleepy"), ("coffee", "make me anxious",
     "makes me anxious"), ("green tea", "make me sleepy", "makes me sleepy")),
    (("the stock market", "fall when interest rates rise", "falls when interest rates rise"),
     ("gold", "rise when interest rates fall", "rises when interest rates fall"),
     ("the dollar", "rise when interest rates rise", "rises when interest rates rise")),
    (("my sourdough starter", "smell like vinegar", "smells like vinegar"),
     ("my compost", "smell like ammonia", "smells like ammonia"),
     ("my sourdough starter", "have a layer of liquid", "has a layer of liquid")),
    (("my knee", "hurt after running", "hurts after running"),
     ("my knee", "click when squatting", "clicks when squatting"),
     ("my hip", "hurt after running", "hurts after running")),
    (("Python", "use indentation for blocks", "uses indentation for blocks"),
     ("Go", "not have exceptions", "does not have exceptions"),
     ("JavaScript", "have both null and undefined", "has both null and undefined")),
)  # fmt: skip

RECOMMENDATIONS: Final = (  # (thing, purpose) siblings
    (("laptop", "programming"), ("laptop", "video editing"), ("monitor", "programming")),
    (("camera", "wildlife photography"), ("lens", "wildlife photography"),
     ("camera", "wedding photography")),
    (("running shoe", "flat feet"), ("running shoe", "trail running"),
     ("walking boot", "flat feet")),
    (("database", "time series data"), ("database", "a small mobile app"),
     ("message queue", "time series data")),
    (("programming language", "a first-time learner"),
     ("programming language", "data science"), ("text editor", "a first-time learner")),
    (("dog breed", "a small flat"), ("dog breed", "families with children"),
     ("cat breed", "a small flat")),
    (("mattress", "back pain"), ("pillow", "neck pain"), ("mattress", "hot sleepers")),
    (("vacuum cleaner", "pet hair"), ("vacuum cleaner", "hard floors"),
     ("air purifier", "pet hair")),
    (("credit card", "travel rewards"), ("credit card", "building credit"),
     ("savings account", "travel rewards")),
    (("houseplant", "low light"), ("houseplant", "a bathroom"), ("houseplant", "beginners")),
    (("budget phone", "battery life"), ("budget phone", "photography"),
     ("budget tablet", "battery life")),
)  # fmt: skip

ATTRIBUTES: Final = (  # (attribute, entity) siblings
    (("population", "Canada"), ("population", "Australia"), ("area", "Canada")),
    (("currency", "Japan"), ("currency", "South Korea"), ("official language", "Japan")),
    (("height", "the Eiffel Tower"), ("height", "the Empire State Building"),
     ("weight", "the Eiffel Tower")),
    (("atomic number", "carbon"), ("atomic number", "nitrogen"), ("atomic mass", "carbon")),
    (("melting point", "iron"), ("melting point", "copper"), ("density", "iron")),
    (("national animal", "Scotland"), ("national animal", "Wales"),
     ("national flower", "Scotland")),
    (("average lifespan", "a house cat"), ("average lifespan", "a golden retriever"),
     ("average weight", "a house cat")),
    (("length", "the Great Wall of China"), ("length", "the Panama Canal"),
     ("age", "the Great Wall of China")),
    (("top speed", "a cheetah"), ("top speed", "a greyhound"), ("average weight", "a cheetah")),
    (("half-life", "carbon-14"), ("half-life", "uranium-238"), ("discoverer", "carbon-14")),
    (("depth", "the Mariana Trench"), ("depth", "Lake Baikal"), ("location", "the Mariana Trench")),
)  # fmt: skip

WORKS: Final = (  # (past verb, agent noun, work) siblings
    (("painted", "painter", "the Mona Lisa"), ("painted", "painter", "The Starry Night"),
     ("restored", "restorer", "the Mona Lisa")),
    (("invented", "inventor", "the telephone"), ("invented", "inventor", "the light bulb"),
     ("patented", "patent holder", "the telephone")),
    (("discovered", "discoverer", "penicillin"), ("discovered", "discoverer", "insulin"),
     ("purified", "purifier", "penicillin")),
    (("composed", "composer", "The Four Seasons"), ("composed", "composer", "The Magic Flute"),
     ("performed", "performer", "The Four Seasons")),
    (("directed", "director", "Jaws"), ("directed", "director", "Jurassic Park"),
     ("produced", "producer", "Jaws")),
    (("founded", "founder", "Amazon"), ("founded", "founder", "Netflix"),
     ("financed", "first investor", "Amazon")),
    (("designed", "designer", "the Sydney Opera House"),
     ("designed", "designer", "the Guggenheim Museum in Bilbao"),
     ("built", "builder", "the Sydney Opera House")),
    (("created", "creator", "the Linux kernel"), ("created", "creator", "the Python language"),
     ("maintained", "maintainer", "the Linux kernel")),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Question:
    item: str
    """The sibling group: pairs are split by it."""
    intent: str
    family: str
    """The template family (its held-out templates stay out of training)."""
    slots: dict[str, str]


def _capital(text: str) -> str:
    return text[0].upper() + text[1:] if text else text


def _render(template: str, slots: dict[str, str]) -> str:
    values = dict(slots)
    for key, value in slots.items():
        values[key.upper()] = _capital(value)
    text = template.format(**values)
    return _capital(text) if template[0] == "{" else text


def _surface(text: str, rng: random.Random) -> str:
    """A harmless change people make when they type, now and then."""
    roll = rng.random()
    if roll < 0.12:
        return text.lower()
    if roll < 0.2:
        return text.rstrip("?.") if text[-1] in "?." else text + "?"
    if roll < 0.26:
        return "Quick question: " + text[0].lower() + text[1:]
    if roll < 0.3:
        return text.rstrip("?.") + ", please?"
    if roll < 0.34:
        return "Hi, " + text[0].lower() + text[1:]
    return text


def _questions() -> Iterator[tuple[Question, tuple[str, ...]]]:
    """Every question with the templates its intent may be asked with."""
    for i, group in enumerate(ACTIONS):
        for j, action in enumerate(group):
            item = f"action{i}"
            yield Question(item, f"howto:{action}", "howto", {"a": action}), HOWTO
            if i < ACTIONS_WITH_COST_AND_TIME and j == 0:
                yield Question(item, f"duration:{action}", "duration", {"a": action}), DURATION
                yield Question(item, f"cost:{action}", "cost", {"a": action}), COST
    for i, (x, y) in enumerate(TERMS):
        item = f"term{i}"
        yield Question(item, f"what:{x}", "what", {"x": x}), WHAT_IS
        yield Question(item, f"what:{y}", "what", {"x": y}), WHAT_IS
        yield Question(item, f"diff:{x}|{y}", "diff", {"x": x, "y": y}), DIFFERENCE
    for i, cause_group in enumerate(CAUSES):
        for s, base, third in cause_group:
            slots = {"s": s, "base": base, "third": third}
            yield Question(f"cause{i}", f"cause:{s}:{base}", "cause", slots), CAUSE
    for i, rec_group in enumerate(RECOMMENDATIONS):
        for t, p in rec_group:
            yield Question(f"rec{i}", f"rec:{t}:{p}", "rec", {"t": t, "p": p}), RECOMMEND
    for i, attr_group in enumerate(ATTRIBUTES):
        for attr, e in attr_group:
            slots = {"attr": attr, "e": e}
            yield Question(f"attr{i}", f"attr:{attr}:{e}", "attr", slots), ATTRIBUTE
    for i, work_group in enumerate(WORKS):
        for v, n, w in work_group:
            slots = {"v": v, "n": n, "w": w}
            yield Question(f"who{i}", f"who:{v}:{w}", "who", slots), WHO


def _pairs(rng: random.Random) -> Iterator[tuple[Question, str, str, str, str, bool]]:
    """(question, template a, template b, a, b, label): rewordings of one question, and
    look-alikes of another question of its item."""
    questions = list(_questions())
    by_item: dict[str, list[tuple[Question, tuple[str, ...]]]] = {}
    for q, templates in questions:
        by_item.setdefault(q.item, []).append((q, templates))
    for q, templates in questions:
        for _ in range(8):
            ta, tb = rng.sample(templates, 2)
            a = _surface(_render(ta, q.slots), rng)
            b = _surface(_render(tb, q.slots), rng)
            yield q, ta, tb, a, b, True
        for other, other_templates in by_item[q.item]:
            if other.intent <= q.intent:
                continue
            for _ in range(5):
                ta, tb = rng.choice(templates), rng.choice(other_templates)
                if other_templates is templates and rng.random() < 0.5:
                    tb = ta  # the hardest look-alike: one wording, another slot
                a = _surface(_render(ta, q.slots), rng)
                b = _surface(_render(tb, other.slots), rng)
                yield q, ta, tb, a, b, False


FAMILIES: Final = (HOWTO, DURATION, COST, WHAT_IS, DIFFERENCE, CAUSE, RECOMMEND, ATTRIBUTE, WHO)


def paraphrase_pairs(seed: int = SEED) -> dict[str, list[LabelledPair]]:
    """The generated pairs by split: whole items per split, and no pair worded with a
    held-out template (two per family) in train."""
    rng = random.Random(seed)
    held_out = {t for templates in FAMILIES for t in rng.sample(templates, 2)}
    items = sorted({q.item for q, _ in _questions()})
    random.Random(seed).shuffle(items)
    cut1, cut2 = int(0.6 * len(items)), int(0.8 * len(items))
    split_of = {
        item: SPLITS[0 if i < cut1 else 1 if i < cut2 else 2] for i, item in enumerate(items)
    }
    result: dict[str, list[LabelledPair]] = {split: [] for split in SPLITS}
    seen: set[tuple[str, str]] = set()
    for n, (q, ta, tb, a, b, label) in enumerate(_pairs(rng)):
        key = (a.casefold(), b.casefold())
        if key[0] == key[1] or key in seen or (key[1], key[0]) in seen:
            continue
        seen.add(key)
        split = split_of[q.item]
        if split == "train" and (ta in held_out or tb in held_out):
            continue
        kind = q.family if label else f"{q.family}:look-alike"
        result[split].append(LabelledPair(f"para-{n:05d}", a, b, label, kind))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    write_generated(args.out / "paraphrases", paraphrase_pairs())


if __name__ == "__main__":
    main()
