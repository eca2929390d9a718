"""Text-to-speech voices from Debian main (espeak-ng, festival, flite) and how they are split.

Held-out speakers (never used for train; dev and test both draw from them):
  * espeak-ng accents ``en-gb-scotland`` and ``en-029`` (Caribbean), with every variant;
  * the ``slt`` speaker in both engines that have her (festival HTS and flite), since the two
    voices are the same woman and sharing her would leak the speaker into train;
  * flite ``rms``.
Train uses the other six espeak accents, festival kal/ked and flite kal/kal16/awb.
"""

from __future__ import annotations

import fnmatch
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ESPEAK_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = tuple(f"f{i}" for i in range(1, 6)) + tuple(f"m{i}" for i in range(1, 9))
# espeak-ng's named variants (other formant sets, breathiness, pitch ranges), for worlds built with
# --wide-voices; the robot-like ones (robosoft*, Demonic, UniRobot, ...) are left out.
ESPEAK_WIDE_VARIANTS = (
    "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris",
    "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene", "Gene2", "gustave", "announcer",
    "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john", "Lee", "linda", "marcelo",
    "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike", "Mr", "Nguyen", "pablo", "paul", "pedro",
    "quincy", "rob", "robert", "steph", "steph2", "steph3", "Storm", "zac", "anika", "AnxiousAndy", "fast",
    "whisperf", "grandpa", "grandma", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "norbert",
    "sandro", "shelby", "travis", "victor", "whisper", "croak",
)
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
HELD_OUT_SPEAKERS = frozenset({"espeak:en-gb-scotland", "espeak:en-029", "slt", "rms"})
# Engines drawn per clip in these proportions (within the split's pool), then a voice uniformly:
# espeak has ~100 accent/variant voices, the others a handful of natural-sounding ones.
ENGINE_WEIGHTS = {"espeak": 0.5, "flite": 0.3, "festival": 0.2}
SAMPLE_RATE = 16000
ENGINE_BINARIES = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}


@dataclass(frozen=True)
class Voice:
    """One TTS voice: id as recorded in the manifest, engine, engine voice name, speaker group."""

    id: str
    engine: str
    name: str
    speaker: str

    @property
    def held_out(self) -> bool:
        """Whether this voice is reserved for dev/test."""
        return self.speaker in HELD_OUT_SPEAKERS


def _speaker(engine: str, name: str) -> str:
    """Speaker group: espeak accent, or the person behind a festival/flite voice."""
    if engine == "espeak":
        return "espeak:" + name.split("+")[0]
    if "slt" in name:
        return "slt"
    return {"kal_diphone": "kal", "kal16": "kal", "ked_diphone": "ked"}.get(name, name)


def all_voices(wide: bool = False) -> list[Voice]:
    """Every voice this module knows, in a fixed order (wide: with espeak's named variants too)."""
    variants = ESPEAK_VARIANTS + (ESPEAK_WIDE_VARIANTS if wide else ())
    specs = [("espeak", f"{a}+{v}") for a in ESPEAK_ACCENTS for v in variants]
    specs += [("festival", v) for v in FESTIVAL_VOICES] + [("flite", v) for v in FLITE_VOICES]
    return [Voice(f"{e}:{n}", e, n, _speaker(e, n)) for e, n in specs]


def filter_voices(voices: list[Voice], patterns: list[str] | None) -> list[Voice]:
    """Voices whose id matches any pattern; a bare engine name ("flite") means all its voices."""
    if not patterns:
        return list(voices)
    globs = [p if ":" in p or "*" in p else p + ":*" for p in patterns]
    return [v for v in voices if any(fnmatch.fnmatchcase(v.id, g) for g in globs)]


def installed(voices: list[Voice]) -> list[Voice]:
    """The voices whose engine binary (and sox) is on PATH."""
    if shutil.which("sox") is None:
        return []
    return [v for v in voices if shutil.which(ENGINE_BINARIES[v.engine])]


def voice_pools(voices: list[Voice]) -> dict[str, list[Voice]]:
    """Voices usable per split: train gets the seen speakers, dev and test the held-out ones."""
    seen = [v for v in voices if not v.held_out]
    held = [v for v in voices if v.held_out]
    return {"train": seen, "dev": held, "test": held}


def pick_voice(pool: list[Voice], rng: random.Random) -> Voice:
    """An engine by ENGINE_WEIGHTS among those in the pool, then one of its voices uniformly."""
    engines = sorted({v.engine for v in pool})
    engine = rng.choices(engines, weights=[ENGINE_WEIGHTS.get(e, 0.1) for e in engines])[0]
    return rng.choice([v for v in pool if v.engine == engine])


def _engine_command(voice: Voice, text_file: Path, raw_wav: Path) -> list[str]:
    """The command line that makes the engine write raw_wav for the text in text_file."""
    if voice.engine == "espeak":
        return ["espeak-ng", "-v", voice.name, "-w", str(raw_wav), "-f", str(text_file)]
    if voice.engine == "flite":
        return ["flite", "-voice", voice.name, "-f", str(text_file), "-o", str(raw_wav)]
    if voice.engine == "festival":
        return ["text2wave", "-eval", f"(voice_{voice.name})", "-o", str(raw_wav), str(text_file)]
    raise ValueError(f"unknown engine {voice.engine!r}")


def prosody_effects(rate: float = 1.0, pitch_cents: int = 0) -> list[str]:
    """sox effects that change the speaking rate (pitch kept) and the pitch (rate kept)."""
    effects = ["tempo", "-s", f"{rate:.3f}"] if rate != 1.0 else []
    return effects + (["pitch", str(pitch_cents)] if pitch_cents else [])


def synthesize(voice: Voice, text: str, out_wav: Path, rate: float = 1.0, pitch_cents: int = 0) -> None:
    """Speak text with voice into out_wav as 16 kHz mono 16-bit PCM, peak-normalised to -3 dB.

    rate and pitch_cents move the speaking rate and pitch after synthesis (sox), so every engine
    gets the same range of slower, faster, higher and lower speakers.
    """
    with tempfile.TemporaryDirectory(prefix="stampscenes-tts-") as tmp:
        text_file, raw = Path(tmp) / "text.txt", Path(tmp) / "raw.wav"
        text_file.write_text(text + "\n", encoding="utf-8")
        subprocess.run(_engine_command(voice, text_file, raw), check=True, capture_output=True, timeout=120)
        # -R: repeatable dither, so the same text and voice always give the same bytes.
        partial = out_wav.with_name(out_wav.name + ".partial.wav")  # renamed into place once complete
        sox = ["sox", "-R", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(partial), *prosody_effects(rate, pitch_cents), "norm", "-3"]
        subprocess.run(sox, check=True, capture_output=True, timeout=120)
        partial.replace(out_wav)
