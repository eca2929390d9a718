"""Find tuxpaint stamps that are real photo cut-outs and turn them into named scene objects.

Photo heuristic (documented here because the build relies on it):
  1. Path rules: skip anything under a ``cartoon`` folder, under ``symbols/`` (letters, digits,
     money, signs), the hand-drawn ``seasonal/easter`` set, ``*_mirror`` copies, stamps that ship an
     ``.svg`` twin (vector clip art), and a short deny-list of drawn stamps that pass step 2.
  2. Texture test inside the alpha mask (opaque pixels, eroded by 2 px so anti-aliased edges do not
     count): the *flat fraction* is the share of pixels whose 4-neighbour Laplacian of luminance is
     below 0.5 grey levels.  Flat fills and vector gradients give 0.2-1.0; photos, with sensor noise
     and texture everywhere, give 0.0-0.1.  A stamp is a photo when flat < 0.12 and it has at least
     150 distinct colours (5-bit RGB) and 500 interior pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from . import phrases

STAMPS_ROOT = Path("/usr/share/tuxpaint/stamps")
FLAT_MAX = 0.12
MIN_COLOURS = 150
MIN_INTERIOR_PX = 500
MIN_LONG_SIDE_PX = 45
_SKIP_DIRS = ("symbols/", "seasonal/easter/")
# Drawn stamps whose scanned texture fools the flat-fraction test, or whose picture shows several
# things at once (counting "two wild boars" would then be wrong).
_DENY = {
    "clothes/button", "animals/mammals/wildboar", "plants/flowers/flower4", "plants/flowers/flower7",
    "plants/mushrooms/cep-2", "military/final-roll-call", "plants/flowers/appooppanthady",
    "plants/lettuce_bolted", "food/fruit/apple_fuji", "food/fruit/apple_granny_smith",
    "food/fruit/apple_sierra_beauty",
}
# Descriptions that the generic rules mangle or reject, but whose picture is a fine object.
PHRASE_OVERRIDES = {
    "food/vegetables/tomato": "a red tomato",
    "food/vegetables/broccoli": "some broccoli",
    "plants/flowers/chemparathi": "a hibiscus flower",
    "plants/flowers/anthoorium": "an anthurium flower",
    "plants/flowers/adeenia": "a desert rose",
    "plants/flowers/bolsom": "a balsam flower",
    "medical/stethoscope": "a stethoscope",
    "household/toilet": "a toilet",
    "household/tools/measuring_tape": "a measuring tape",
    "animals/insects/hoverfly": "a hoverfly",
    "animals/mammals/bovines/gnu-baby": "a baby gnu",
    "animals/mammals/bovines/gnu-baby-stand": "a baby gnu",
    "seasonal/christmas/Candy_cane_photo_1": "a candy cane",
    "seasonal/christmas/Candy_cane_photo_2": "a candy cane",
    "seasonal/christmas/Christmas_pudding": "a christmas pudding",
    "seasonal/christmas/Mince_Pie": "a mince pie",
    "seasonal/christmas/Roast_turkey": "a roast turkey",
    "seasonal/christmas/German_Christmas_toy": "a wooden toy",
    "town/monuments/inukshuk-photo": "a stone inukshuk",
    "town/roadsigns/dead_end_sign": "a dead end sign",
    "town/roadsigns/railroad_crossing": "a railroad crossing sign",
    "town/uk_post_box": "a red post box",
    "plants/mushrooms/cep": "a mushroom",
    "plants/mushrooms/cep-1": "a mushroom",
    "plants/trees/rambutan": "a rambutan tree",
    "plants/lavender": "a lavender plant",
    "plants/flowers/anemone_red": "an anemone flower",
    "space/apollo_lander": "a lunar lander",
    "space/voyager2": "a space probe",
    "space/spacewalk": "an astronaut",
    "space/planets/2_venus": "the planet venus",
    "space/planets/4_mars": "the planet mars",
    "space/planets/5_jupiter": "the planet jupiter",
    "space/planets/6_saturn": "the planet saturn",
    "military/vehicles/f22_raptor": "a fighter jet",
    "animals/fish/bluegroper": "a blue groper",
    "animals/mammals/bears/toys/edward_bear": "a teddy bear",
    "people/toys/grannysmith": "a rag doll",
    "food/vegetables/corn": "a corn cob",
    **{f"seasonal/halloween/grave-{c}": "a gravestone" for c in "abcdefghij"},
}


@dataclass(frozen=True)
class StampObject:
    """One usable object: its spoken phrase, naming, source stamp and photo statistics."""

    id: str
    phrase: str
    head: str
    name: str
    countable: bool
    category: str
    source: str
    mirrorable: bool
    flat: float
    colours: int
    pixels: int
    # Every name a caption may use: the phrase first, then plain and synonymous names.
    variants: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The phrases captions draw from (the phrase alone for objects made without variants)."""
        return self.variants or (self.phrase,)


def _erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Binary erosion with a 4-neighbourhood, in numpy to avoid a scipy dependency."""
    m = mask.copy()
    for _ in range(iterations):
        inner = np.zeros_like(m)
        inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        m = inner
    return m


def texture_stats(rgba: np.ndarray) -> tuple[float, int, int]:
    """Flat fraction, distinct 5-bit colours and interior pixel count of an RGBA array."""
    rgb = rgba[..., :3].astype(np.float32)
    interior = _erode(rgba[..., 3] > 250, 2)
    n = int(interior.sum())
    if n == 0:
        return 1.0, 0, 0
    g = rgb.mean(axis=2)
    lap = np.zeros_like(g)
    lap[1:-1, 1:-1] = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    flat = float((np.abs(lap[interior]) < 0.5).mean())
    q = rgba[..., :3][interior].astype(np.int32) // 8
    colours = len(np.unique(q[:, 0] * 1024 + q[:, 1] * 32 + q[:, 2]))
    return flat, colours, n


def is_photo_texture(flat: float, colours: int, pixels: int) -> bool:
    """The texture half of the photo heuristic (see the module docstring)."""
    return flat < FLAT_MAX and colours >= MIN_COLOURS and pixels >= MIN_INTERIOR_PX


def path_allowed(rel: str, root: Path = STAMPS_ROOT) -> bool:
    """The path half of the photo heuristic: False for known clip-art locations."""
    stem = rel[:-4] if rel.endswith(".png") else rel
    if "cartoon" in Path(rel).parts or rel.startswith(_SKIP_DIRS) or stem in _DENY:
        return False
    return not stem.endswith("_mirror") and not (root / (stem + ".svg")).exists()


def read_description(png: Path) -> str:
    """First line of the stamp's English description, or ''."""
    txt = png.with_suffix(".txt")
    if not txt.exists():
        return ""
    lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    return lines[0].strip() if lines else ""


def _mirrorable(png: Path) -> bool:
    """Whether tuxpaint allows flipping the stamp left-right (text would read backwards)."""
    dat = png.with_suffix(".dat")
    return not (dat.exists() and "nomirror" in dat.read_text(errors="replace").split())


def make_object(png: Path, root: Path = STAMPS_ROOT) -> StampObject | None:
    """Build a StampObject from a stamp PNG, or None when it is not a usable photo object."""
    rel = png.relative_to(root).as_posix()
    if not path_allowed(rel, root):
        return None
    description = read_description(png)
    phrase = PHRASE_OVERRIDES.get(rel[:-4]) or phrases.normalise_caption(description)
    rgba = np.asarray(Image.open(png).convert("RGBA"))
    flat, colours, pixels = texture_stats(rgba)
    if phrase is None or not is_photo_texture(flat, colours, pixels) or max(rgba.shape[:2]) < MIN_LONG_SIDE_PX:
        return None
    name = phrases.object_name(phrase)
    return StampObject(
        id=name.replace(" ", "_"), phrase=phrase, head=phrases.head_noun(phrase), name=name,
        countable=phrases.is_countable(phrase), category=rel.split("/")[0], source=rel,
        mirrorable=_mirrorable(png), flat=round(flat, 4), colours=colours, pixels=pixels,
        variants=phrases.name_variants(phrase, name, description),
    )


def _preference(obj: StampObject) -> tuple[bool, int, int, str]:
    """Sort key among same-name duplicates: phrase says the name, shortest, most pixels, path."""
    says_name = obj.phrase.endswith(obj.name) or obj.head == obj.name
    return (not says_name, len(obj.phrase.split()), -obj.pixels, obj.source)


def dedupe_by_name(objs: list[StampObject]) -> list[StampObject]:
    """Keep one object per name (e.g. one "dog"), sorted by id."""
    best: dict[str, StampObject] = {}
    for obj in objs:
        if obj.name not in best or _preference(obj) < _preference(best[obj.name]):
            best[obj.name] = obj
    return sorted(best.values(), key=lambda o: o.id)


@lru_cache(maxsize=4)
def discover_objects(root: Path = STAMPS_ROOT) -> tuple[StampObject, ...]:
    """All usable, de-duplicated photo objects under the stamps folder, sorted by id."""
    found = [make_object(p, root) for p in sorted(root.rglob("*.png"))]
    return tuple(dedupe_by_name([o for o in found if o is not None]))


def _stable_rank(text: str, seed: int) -> str:
    """A seed-dependent but platform-independent sort key."""
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def select_objects(objs: list[StampObject] | tuple[StampObject, ...], n: int | None, seed: int = 0) -> list[StampObject]:
    """A deterministic subset of n objects, spread over categories in proportion to their size."""
    if n is None or n >= len(objs):
        return sorted(objs, key=lambda o: o.id)
    by_cat: dict[str, list[StampObject]] = {}
    for obj in sorted(objs, key=lambda o: _stable_rank(o.id, seed)):
        by_cat.setdefault(obj.category, []).append(obj)
    # Interleave categories: the i-th object of a category of size k sorts at (i + 0.5) / k.
    keyed = [((i + 0.5) / len(v), _stable_rank(o.id, seed), o) for v in by_cat.values() for i, o in enumerate(v)]
    chosen = [o for _, _, o in sorted(keyed, key=lambda t: t[:2])[:n]]
    return sorted(chosen, key=lambda o: o.id)


@lru_cache(maxsize=512)
def load_object_image(source: str, root: str = str(STAMPS_ROOT)) -> Image.Image:
    """The stamp as RGBA, cropped to its alpha bounding box (cached per process)."""
    im = Image.open(Path(root) / source).convert("RGBA")
    alpha = im.getchannel("A").point(lambda a: 255 if a > 16 else 0)
    return im.crop(alpha.getbbox() or (0, 0, *im.size))
