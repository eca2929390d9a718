"""A tiny bundle built on the fly (random weights): tiny open_clip towers and a tiny speech encoder.

Its own module, not conftest.py: tests/torture has a conftest.py too, so `import conftest` would
depend on which one pytest loaded first.
"""

from __future__ import annotations

from pathlib import Path

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def build_tiny_bundle(directory: Path, name: str = "tiny", seed: int = 0) -> Path:
    """A complete bundle folder: tiny open_clip towers + tiny from-scratch learned speech encoder."""
    import torch

    from searchengine.bundles import clip
    from searchengine.bundles.bundle import save_bundle_dir
    from searchengine.bundles.speech import LearnedSpeechEncoder, SpeechEncoderConfig

    torch.manual_seed(seed)
    towers = clip.build_custom(TINY_CLIP, "cpu")
    speech = LearnedSpeechEncoder(SpeechEncoderConfig(frontend=None, embed_dim=16, width=32, layers=1, heads=2))
    return save_bundle_dir(directory, name, TINY_CLIP, towers, speech, half=False)
