"""Labelled pairs made by rule from sentences written for this project.

Each frame is a question with one slot that changes the answer (a number, a negation, a
direction, under / over, before / after, am / pm, a negating prefix, an opposite verb):
filling it two ways gives a pair that must NOT be served (label false); one harmless
rewrite of the same question (contraction, "How can I", lower case, digits as words,
"to B from A") gives a pair that may be (label true), so that a model cannot learn "these
frames are always different". Code pairs differ only in indentation: changing the block
structure is a different question; the same structure re-indented is the same one.

Pairs are split by frame (60/20/20, fixed seed): the test frames are never trained on.
Code pairs are kept for evaluation only (test split): a WordPiece tokenizer drops
whitespace, so no model reading its tokens can tell them apart.

    python -m training.verifier.rules --out /work/train-out
"""

from __future__ import annotations

import argparse
import random
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

from training.verifier.common import DEFAULT_OUT, SPLITS, LabelledPair, write_generated

SEED: Final = 15

PLACES: Final = (
    "Paris", "Berlin", "Madrid", "Chicago", "Boston", "Tokyo", "Osaka", "Delhi", "Mumbai",
    "Lagos", "Nairobi", "Lima", "Oslo", "Rome", "Toronto", "Sydney", "Cairo", "Seoul",
)  # fmt: skip
NUMBERS: Final = (2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 20, 25, 30, 40, 50, 64, 100, 250, 500)
WORDS: Final = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                9: "nine", 12: "twelve", 20: "twenty", 30: "thirty", 50: "fifty"}  # fmt: skip
THINGS: Final = (
    "laptop", "phone", "printer", "router", "dishwasher", "car", "tablet", "washing machine",
    "smart watch", "microwave", "bike light", "electric kettle",
)  # fmt: skip

# {N}: a number.
NUMBER_FRAMES: Final = (
    "How many calories are in {N} boiled eggs?",
    "What is {N} percent of 80?",
    "Is {N} a prime number?",
    "How do I convert {N} miles to kilometres?",
    "Is it safe to take {N} mg of melatonin a night?",
    "What should a {N} year old child eat for breakfast?",
    "How long does it take to walk {N} kilometres?",
    "What is the square root of {N}?",
    "How much does a {N} day trip to Iceland cost?",
    "Can I run a marathon after training for {N} weeks?",
    "How do I cook rice for {N} people?",
    "What gift should I buy for a {N} year anniversary?",
)
# {NOT}: "" or "not ".
NEGATION_FRAMES: Final = (
    "Why does my {T} {NOT}turn on after charging?",
    "Why is my {T} {NOT}connecting to the wifi?",
    "What happens if I do {NOT}update my {T}?",
    "Why should I {NOT}leave my {T} plugged in overnight?",
    "Is it normal that my {T} is {NOT}getting warm?",
    "Why does my {T} {NOT}make noise when it starts?",
    "How can I tell if my {T} is {NOT}under warranty?",
    "Is it bad to {NOT}turn off my {T} every night?",
)
# {A}, {B}: two places.
DIRECTION_FRAMES: Final = (
    "How long is the flight from {A} to {B}?",
    "What is the cheapest way to get from {A} to {B}?",
    "Is there a night train from {A} to {B}?",
    "How much does it cost to ship a parcel from {A} to {B}?",
    "What is the time difference from {A} to {B}?",
    "How far is it to drive from {A} to {B}?",
    "Do I need a visa to travel from {A} to {B}?",
    "How do I move my pension from {A} to {B}?",
)
# (frame, word, its opposite): {W} is one or the other; {T} a thing, {N} a number.
SWAP_FRAMES: Final = (
    ("Which {T} models cost {W} {N}00 dollars?", "under", "over"),
    ("Are there good jobs for people {W} {N}0?", "under", "over"),
    ("Can children {W} {N} ride the bus alone?", "under", "over"),
    ("What should I eat {W} a long run?", "before", "after"),
    ("Should I stretch {W} lifting weights?", "before", "after"),
    ("Is it better to shower {W} going to bed?", "before", "after"),
    ("What happened in Europe just {W} the First World War?", "before", "after"),
    ("Is the pharmacy open at {N} {W} on Sundays?", "am", "pm"),
    ("Can I book a {T} repair for {N} {W} tomorrow?", "am", "pm"),
    ("Why do I wake up at {N} {W} every day?", "am", "pm"),
    ("Is it {W} to rain in {A} tomorrow?", "likely", "unlikely"),
    ("Why is my passport {W} for travel to {A}?", "valid", "invalid"),
    ("Which house plants are {W} for cats?", "toxic", "non-toxic"),
    ("Is this {T} warranty claim {W}?", "acceptable", "unacceptable"),
    ("Why is my {T} battery replacement {W}?", "possible", "impossible"),
    ("Is the damage to my {T} {W}?", "reversible", "irreversible"),
    ("Which foods should I {W} when taking iron tablets?", "take", "avoid"),
    ("Which medicines should I {W} before a blood test?", "take", "avoid"),
    ("What should I {W} in a cover letter for a job in {A}?", "include", "leave out"),
    ("Which cables should I {W} before opening my {T}?", "connect", "disconnect"),
    ("How do I {W} notifications on my {T}?", "enable", "disable"),
    ("Should I {W} my {T} before travelling to {A}?", "lock", "unlock"),
)

# Snippets whose block structure changes when one line is indented differently.
CODE_SNIPPETS: Final = (
    ("total = 0\nfor x in items:\n    total += x\n    print(total)\n", 3),
    ("for user in users:\n    if user.active:\n        send(user)\n    log(user)\n", 3),
    ("while queue:\n    job = queue.pop()\n    run(job)\nsave()\n", 3),
    ("def area(r):\n    result = 3.14 * r * r\n    return result\nprint(area(2))\n", 3),
    ("if ready:\n    start()\n    notify()\n", 2),
    ("try:\n    load()\n    parse()\nexcept ValueError:\n    retry()\n", 2),
    ("for row in rows:\n    for cell in row:\n        check(cell)\n    flush()\n", 3),
    ("with open(path) as f:\n    data = f.read()\n    process(data)\n", 2),
)


def _harmless(text: str, rng: random.Random) -> str:
    """A rewrite of ``text`` that keeps its meaning (the first rule that applies)."""
    rewrites: list[Callable[[str], str]] = [
        lambda t: t.replace("What is ", "What's "),
        lambda t: t.replace("How do I ", "How can I "),
        lambda t: t.replace("Is it ", "Would you say it is ") if t.startswith("Is it ") else t,
        lambda t: t.replace("Why does my ", "Why would my "),
        lambda t: "Quick question: " + t[0].lower() + t[1:],
        lambda t: t.lower().rstrip("?"),
        lambda t: t.rstrip("?") + ", please?",
        lambda t: "Can you tell me " + t[0].lower() + t[1:],
    ]
    rng.shuffle(rewrites)
    for rewrite in rewrites:
        out = rewrite(text)
        if out != text:
            return out
    return text.lower()


def _fill(frame: str, rng: random.Random, **fixed: str) -> str:
    values = {
        "T": rng.choice(THINGS),
        "N": str(rng.choice(NUMBERS[:8])),
        "A": rng.choice(PLACES),
        **fixed,
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], frame)


def _pairs(rng: random.Random) -> Iterator[tuple[str, str, str, str, bool]]:
    """(frame key, kind, a, b, label) for every generated pair."""
    for f, frame in enumerate(NUMBER_FRAMES):
        for _ in range(12):
            n, m = rng.sample(NUMBERS, 2)
            base = _fill(frame, rng, N=str(n))
            yield f"number{f}", "number", base, base.replace(str(n), str(m), 1), False
            yield f"number{f}", "number", base, _harmless(base, rng), True
            if n in WORDS:
                yield f"number{f}", "number", base, base.replace(str(n), WORDS[n], 1), True
    for f, frame in enumerate(NEGATION_FRAMES):
        for thing in THINGS:
            plain = _fill(frame, rng, T=thing, NOT="")
            negated = _fill(frame, rng, T=thing, NOT="not ")
            yield f"negation{f}", "negation", plain, negated, False
            yield f"negation{f}", "negation", plain, _harmless(plain, rng), True
            yield f"negation{f}", "negation", negated, _harmless(negated, rng), True
    for f, frame in enumerate(DIRECTION_FRAMES):
        for _ in range(14):
            a, b = rng.sample(PLACES, 2)
            there = _fill(frame, rng, A=a, B=b)
            back = _fill(frame, rng, A=b, B=a)
            yield f"direction{f}", "direction", there, back, False
            reordered = there.replace(f"from {a} to {b}", f"to {b} from {a}")
            yield f"direction{f}", "direction", there, reordered, True
            yield f"direction{f}", "direction", there, _harmless(there, rng), True
    for f, (frame, word, opposite) in enumerate(SWAP_FRAMES):
        kind = f"{word}/{opposite}"
        for _ in range(10):
            fixed = {"T": rng.choice(THINGS), "N": str(rng.choice(NUMBERS[:8]))}
            fixed["A"] = rng.choice(PLACES)
            one = _fill(frame, rng, W=word, **fixed)
            other = _fill(frame, rng, W=opposite, **fixed)
            yield f"swap{f}", kind, one, other, False
            yield f"swap{f}", kind, one, _harmless(one, rng), True
            yield f"swap{f}", kind, other, _harmless(other, rng), True
    for f, (code, line) in enumerate(CODE_SNIPPETS):
        lines = code.splitlines(keepends=True)
        moved = list(lines)
        stripped = moved[line].lstrip(" ")
        indent = len(moved[line]) - len(stripped)
        moved[line] = " " * (indent - 4 if indent >= 4 else indent + 4) + stripped
        reindented = "".join(re.sub(r"^( +)", lambda m: m.group(1)[: len(m.group(1)) // 2], x)
                             for x in lines)  # fmt: skip
        question = "What does this Python code print?\n"
        yield f"code{f}", "indent", question + code, question + "".join(moved), False
        yield f"code{f}", "indent", question + code, question + reindented, True


def rule_pairs(seed: int = SEED) -> dict[str, list[LabelledPair]]:
    """The generated pairs by split (whole frames per split; code pairs in test only)."""
    rng = random.Random(seed)
    generated = list(_pairs(rng))
    frames = sorted({key for key, *_ in generated if not key.startswith("code")})
    random.Random(seed).shuffle(frames)
    cut1, cut2 = int(0.6 * len(frames)), int(0.8 * len(frames))
    split_of = {
        key: SPLITS[0 if i < cut1 else 1 if i < cut2 else 2] for i, key in enumerate(frames)
    }
    result: dict[str, list[LabelledPair]] = {split: [] for split in SPLITS}
    seen: set[tuple[str, str]] = set()
    for n, (key, kind, a, b, label) in enumerate(generated):
        if a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        split = split_of.get(key, "test")
        result[split].append(LabelledPair(f"rule-{n:05d}", a, b, label, kind))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    write_generated(args.out / "rules", rule_pairs())


if __name__ == "__main__":
    main()
