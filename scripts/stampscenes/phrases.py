"""Turn tuxpaint stamp descriptions into short spoken noun phrases, head nouns and plurals."""

from __future__ import annotations

import re

ARTICLES = ("a", "an", "the", "some")
MAX_WORDS = 5
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}

# Words after ", " that start an explanation ("A Seville orange, also called ...") rather than a
# list of adjectives ("A ripe, red tomato"): cut there instead of merely dropping the comma.
_EXPLANATION_STARTERS = {
    "also", "from", "called", "which", "who", "that", "or", "and", "it", "its", "the", "a", "an",
    "named", "used", "known", "with", "made",
}
# Intensifiers add length without adding anything a listener could see, and size words would
# contradict the random scale the object is pasted at.
_FILLER_WORDS = {"very", "small", "little", "large", "big", "tiny", "huge"}
# Function words that end the noun itself: the head noun is the word just before them.
_HEAD_STOPPERS = {"of", "with", "in", "on", "at", "for", "from"}
# "a pair of cherries": the thing is "cherries", but the counted noun is "pair".
_QUANTIFIER_HEADS = {"pair", "bunch", "head", "glass", "string", "cluster", "quarter", "slice"}
# Two-word names that must not collapse onto their last word when de-duplicating by name.
COMPOUND_NAMES = {
    "sea lion", "fire truck", "garbage truck", "pickup truck", "dump truck", "tennis ball",
    "soccer ball", "cricket ball", "christmas tree", "palm tree", "teddy bear", "candy cane",
    "traffic cone", "post box", "trophy cup", "tennis racket", "rubber duck", "pepper grinder",
    "measuring tape", "wheelie bin", "garbage can", "compost bin", "mince pie", "drum kit",
    "guinea fowl", "pine cone", "air balloon", "sports car", "race car", "polo shirt",
    "party hat", "baseball cap", "top hat", "party horn", "hibiscus flower", "anthurium flower",
    "balsam flower", "pigface flower", "anemone flower", "crossing sign", "end sign", "corn cob",
}
# Generic last words that name the kind, not the thing: "an avocado fruit" is an "avocado".
_GENERIC_SUFFIXES = {"fruit", "plant", "root"}
# Names that denote the same visual category, so only one of them survives de-duplication.
NAME_SYNONYMS = {
    "drake": "duck", "doe": "deer", "dromedary": "camel", "ram": "sheep", "lamb": "sheep",
    "gull": "seagull", "tombstone": "gravestone", "headstone": "gravestone", "kiwifruit": "kiwi",
}
_IRREGULAR_PLURALS = {
    "mouse": "mice", "sheep": "sheep", "deer": "deer", "goose": "geese", "bison": "bison",
    "fish": "fish", "shrimp": "shrimp", "trout": "trout", "caribou": "caribou", "tooth": "teeth",
    "foot": "feet", "leaf": "leaves", "knife": "knives", "wolf": "wolves", "calf": "calves",
    "fowl": "fowl", "moose": "moose", "ox": "oxen", "child": "children", "person": "people",
    "yak": "yaks", "binoculars": "binoculars", "scissors": "scissors", "pliers": "pliers",
    "hippopotamus": "hippopotamuses", "cactus": "cacti", "octopus": "octopuses",
}
_O_ES_PLURALS = {"potato", "tomato", "mango", "echo", "hero", "dingo", "buffalo", "volcano"}
_AN_EXCEPTIONS_A = ("uni", "use", "usu", "eu", "one", "once", "ewe", "uk")
_AN_EXCEPTIONS_AN = ("hour", "honest", "honour", "heir")


def _strip_quotes(text: str) -> str:
    """Remove quotation marks but keep in-word apostrophes."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[\u201c\u201d\"]", "", text)
    return re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", "", text)


def _cut_at_comma(text: str) -> str:
    """Cut an explanatory tail after a comma, or drop a comma between adjectives."""
    head, sep, tail = text.partition(", ")
    if not sep:
        return text
    first = tail.split(" ", 1)[0].lower()
    if first in _EXPLANATION_STARTERS:
        return head
    return head + " " + _cut_at_comma(tail)


def fix_article(phrase: str) -> str:
    """Make a leading "a"/"an" agree with the following word ("an hippopotamus" -> "a ...")."""
    words = phrase.split()
    if len(words) < 2 or words[0] not in ("a", "an"):
        return phrase
    nxt = words[1]
    vowel = nxt[0] in "aeiou"
    if nxt.startswith(_AN_EXCEPTIONS_A):
        vowel = False
    if nxt.startswith(_AN_EXCEPTIONS_AN):
        vowel = True
    words[0] = "an" if vowel else "a"
    return " ".join(words)


def normalise_caption(raw: str) -> str | None:
    """Reduce a stamp description to a short lower-case noun phrase, or None if impossible."""
    text = _strip_quotes(raw.strip().splitlines()[0] if raw.strip() else "")
    text = re.sub(r"\([^)]*\)", " ", text)
    # The first sentence or clause carries the name; the rest is trivia for children.
    text = re.split(r"[.!?;:\u2014\u2013]| - ", text, maxsplit=1)[0]
    text = _cut_at_comma(text.strip())
    words = [w for w in re.sub(r"[^\w' -]", " ", text).lower().split() if w not in _FILLER_WORDS]
    if not words or words[0] not in ARTICLES or not 2 <= len(words) <= MAX_WORDS:
        return None
    return fix_article(" ".join(words))


def _noun_part(phrase: str) -> list[str]:
    """Words of the phrase up to the first head-ending function word, article removed."""
    words = phrase.split()
    if words and words[0] in ARTICLES:
        words = words[1:]
    for i, w in enumerate(words):
        if w in _HEAD_STOPPERS and i > 0:
            return words[:i]
    return words


def head_noun(phrase: str) -> str:
    """The noun that takes the plural ("a pair of cherries" -> "pair", "a brown hen" -> "hen")."""
    return _noun_part(phrase)[-1]


def object_name(phrase: str) -> str:
    """The category name used to detect near-duplicates ("a pair of cherries" -> "cherries")."""
    words = phrase.split()
    if words and words[0] in ARTICLES:
        words = words[1:]
    if len(words) >= 3 and words[0] in _QUANTIFIER_HEADS and words[1] == "of":
        return object_name(" ".join(words[2:]))
    noun = _noun_part(" ".join(words))
    pair = " ".join(noun[-2:])
    if len(noun) >= 2 and pair in COMPOUND_NAMES:
        return pair
    if len(noun) >= 2 and noun[-1] in _GENERIC_SUFFIXES:
        return noun[-2]
    return NAME_SYNONYMS.get(noun[-1], noun[-1])


def pluralise_word(word: str) -> str:
    """English plural of one noun."""
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if word.endswith("fish"):
        return word  # "two clownfish", not "clownfishes"
    if word.endswith("man") and len(word) > 4:
        return word[:-3] + "men"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in tuple("aeiou"):
        return word[:-1] + "ies"
    if word in _O_ES_PLURALS:
        return word + "es"
    return word + "s"


def is_countable(phrase: str) -> bool:
    """Whether "two <phrase>" makes sense (not "some broccoli" or "the earth")."""
    return phrase.split()[0] in ("a", "an")


def counted_phrase(phrase: str, count: int) -> str:
    """Phrase for `count` instances: "a duck" -> "two ducks", "a pair of pliers" -> "two pairs of pliers"."""
    if count == 1:
        return phrase
    words = phrase.split()
    body = words[1:] if words[0] in ARTICLES else words
    head_idx = len(_noun_part(phrase)) - 1
    body[head_idx] = pluralise_word(body[head_idx])
    return " ".join([NUMBER_WORDS[count], *body])


def join_list(items: list[str]) -> str:
    """Join phrases as spoken English: "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]



# Everyday names people say for an object whose stamp description uses another (keyed by object
# name). Only names that point at no other object of the collection ("bulb" would be the lightbulb).
EVERYDAY_SYNONYMS = {
    "airplane": ("a plane", "an aeroplane"), "hippopotamus": ("a hippo",), "mountaingoat": ("a mountain goat",),
    "pinecone": ("a pine cone",), "clothespin": ("a clothes peg",), "lightbulb": ("a light bulb",),
    "garbage can": ("a trash can",), "eggplant": ("an aubergine",), "fireman": ("a firefighter",),
    "earth": ("the planet earth",), "wapiti": ("an elk",), "dumper": ("a dump truck",), "rooster": ("a cockerel",),
    "orca": ("a killer whale",), "teddy bear": ("a teddy",), "mantis": ("a praying mantis",), "gnu": ("a wildebeest",),
    "tricycle": ("a trike",), "sailboat": ("a boat",), "car": ("a car",),
    "race car": ("a racing car",), "post box": ("a letter box",), "lander": ("a spacecraft",),
    "chimpanzee": ("a chimp",), "paintbrush": ("a brush",), "kiwi": ("a kiwi",), "compost bin": ("a compost bin",),
}
# Plain names that would name another object or the wrong thing once the description's first
# words are dropped ("a vw beetle" is a car, "a garlic bulb" is no lightbulb).
_NO_PLAIN_NAME = {"beetle", "bulb", "cylinder", "probe", "mixer", "end sign", "crossing sign", "toy", "tree", "wheel"}
# A description's own synonym: "A Seville orange, also called a bitter orange."
_DESCRIBED_AS = re.compile(r"\b(?:also called|also known as|known as)\s+((?:a|an|the)\s+[a-z' -]+)", re.I)


def _with_article(name: str) -> str:
    return fix_article(f"a {name}")


def name_variants(phrase: str, name: str, description: str = "") -> tuple[str, ...]:
    """Every phrase a caption may use for one object: the stamp's phrase first, then other names.

    Its plain name ("a brown hen" -> "a hen"), names the description itself gives ("also called a
    bitter orange"), the grouping synonyms ("a drake" for "a duck") and everyday names
    (EVERYDAY_SYNONYMS), each at most MAX_WORDS words and listed once.
    """
    out = [phrase]
    if is_countable(phrase) and name not in _NO_PLAIN_NAME and head_noun(phrase) in name.split()[-1:]:
        out.append(_with_article(name))
    for match in _DESCRIBED_AS.finditer(description):
        found = normalise_caption(match.group(1).strip().rstrip("."))
        if found:
            out.append(found)
    out += [_with_article(word) for word, target in NAME_SYNONYMS.items() if target == name and is_countable(phrase)]
    out += list(EVERYDAY_SYNONYMS.get(name, ()))
    kept: list[str] = []
    for variant in out:
        if variant not in kept and len(variant.split()) <= MAX_WORDS:
            kept.append(variant)
    return tuple(kept)
