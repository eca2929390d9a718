"""The only module that imports open_clip: image and text towers of a bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from .. import settings
from ..errors import BundleError, BundleNotFound, SearchEngineError, WeightsMissing
from .device import pick_device
from .hub import hub_reachable
from .precision import autocast, resolve_precision
from .precision import prepare as prepare_precision
from .registry import HF_HUB_PREFIX
from .weights import cached_clip_file, cached_hub_model


class ClipTowers:
    """An open_clip model with its preprocessing and tokenizer; encoders return unit float32 rows."""

    def __init__(self, model: open_clip.CLIP, preprocess, tokenizer, dim: int, device: str | None = None):
        self.device = pick_device(device)
        self.dim = dim
        self.model = model.to(self.device).eval()
        # The square the image tower reads: decoding need not keep more than a few times this.
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(min(size) if isinstance(size, (tuple, list)) else size)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.use_precision(None)

    def use_precision(self, precision: str | None) -> None:
        """Run the encoders at `precision` (fp32, bf16, int8; None: the device's default). `model` stays float."""
        self.precision = resolve_precision(precision, self.device)
        self.runner = prepare_precision(self.model, self.precision)

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        """The tower's exact input for a decoded RGB image: float32 [3, S, S] (resized, cropped, normalised).

        Thread-safe and free of model state, so decode workers run it beside the encoder.
        """
        return self.preprocess(image).numpy()

    @torch.no_grad()
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """[N, D] unit vectors for a batch of prepare_image outputs, float32 [N, 3, S, S]."""
        batch = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        if str(self.device).startswith("cuda"):  # page-locked memory lets the copy run beside the GPU's work
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        with autocast(self.device, self.precision):
            return _unit_numpy(self.runner.encode_image(batch))

    def encode_images(self, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
        """[N, D] unit vectors for RGB images."""
        out = [self.encode_pixels(np.stack([self.prepare_image(img) for img in images[i:i + batch_size]]))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """[N, D] unit vectors for captions or transcripts."""
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[start:start + batch_size]).to(self.device)
            with autocast(self.device, self.precision):
                out.append(_unit_numpy(self.runner.encode_text(tokens)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def text_tower_parts(self) -> dict:
        """The text transformer's weights as plain tensors, for a speech head that reads like it.

        Only open_clip's default text tower (learned positions, causal mask, pooling at the end
        token, a projection matrix) is supported; others raise BundleError.
        """
        model = self._default_text_tower()
        embed = model.token_embedding.weight.detach().float().cpu()
        blocks = [{k: v.detach().float().cpu() for k, v in b.state_dict().items()} for b in model.transformer.resblocks]
        return {"start": embed[self.tokenizer.sot_token_id], "end": embed[self.tokenizer.eot_token_id],
                "positional": model.positional_embedding.detach().float().cpu(), "blocks": blocks,
                "ln_final": {k: v.detach().float().cpu() for k, v in model.ln_final.state_dict().items()},
                "projection": model.text_projection.detach().float().cpu()}

    def text_tower_shape(self) -> dict:
        """width, heads, layers and context_length of the text transformer."""
        transformer = self._default_text_tower().transformer
        return {"width": transformer.width, "heads": transformer.resblocks[0].attn.num_heads,
                "layers": len(transformer.resblocks), "context_length": self.model.context_length}

    def _default_text_tower(self) -> open_clip.CLIP:
        model = self.model
        if (not isinstance(model, open_clip.CLIP) or getattr(model, "text_pool_type", "argmax") != "argmax"
                or not torch.is_tensor(model.text_projection)):
            raise BundleError("this text tower does not pool at its end token through a projection matrix")
        return model


def _unit_numpy(feats: torch.Tensor) -> np.ndarray:
    """Normalise in float32 (fp16 norms lose precision) and leave the GPU."""
    return F.normalize(feats.float(), dim=-1).cpu().numpy().astype(np.float32)


def build_custom(model_cfg: dict, device: str | None = None) -> ClipTowers:
    """A CLIP from a custom config dict (open_clip's JSON shape), randomly initialised."""
    model = open_clip.CLIP(embed_dim=model_cfg["embed_dim"], vision_cfg=model_cfg["vision_cfg"],
                           text_cfg=model_cfg["text_cfg"], quick_gelu=model_cfg.get("quick_gelu", False))
    return _wrap(model, model_cfg, device)


def _wrap(model: open_clip.CLIP, model_cfg: dict, device: str | None) -> ClipTowers:
    """Attach eval preprocessing and a tokenizer sized to the text tower's context (and token table)."""
    image_size = model_cfg["vision_cfg"].get("image_size", 224)
    preprocess = open_clip.image_transform(image_size, is_train=False)
    context = model_cfg["text_cfg"].get("context_length", 77)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    if model_cfg.get(TOKEN_IDS):  # a pruned token table (bundles trained before pruning have none)
        tokenizer = PrunedTokenizer(tokenizer, model_cfg[TOKEN_IDS])
    return ClipTowers(model, preprocess, tokenizer, model_cfg["embed_dim"], device)


# model_cfg key of a pruned token table: the original token id of each kept row, UNK_ID for the
# row every other token maps to. open_clip ignores keys it does not know.
TOKEN_IDS = "token_ids"
UNK_ID = -1


class PrunedTokenizer:
    """open_clip's BPE tokenizer whose ids are mapped onto a pruned token table, unknown ones to <unk>.

    The kept ids stay in ascending order with the end-of-text token last, so the text tower, which
    pools at the largest id of a row, still pools at the end token; row 0 stays the padding id.
    """

    def __init__(self, base, token_ids: list[int]):
        self.base = base
        self.context_length = base.context_length
        self.token_ids = list(token_ids)
        unk = self.token_ids.index(UNK_ID) if UNK_ID in self.token_ids else 0
        size = max(len(base.encoder), max(self.token_ids) + 1)
        self.lookup = torch.full((size,), unk, dtype=torch.long)
        for new, old in enumerate(self.token_ids):
            if old != UNK_ID:
                self.lookup[old] = new
        self.sot_token_id = int(self.lookup[base.sot_token_id])
        self.eot_token_id = int(self.lookup[base.eot_token_id])
        self.unk_token_id = unk

    def __call__(self, texts, context_length: int | None = None) -> torch.Tensor:
        return self.lookup[self.base(texts, context_length)]

    def encode(self, text: str) -> list[int]:
        """Pruned ids of a text's BPE tokens (no start/end tokens)."""
        return [int(self.lookup[i]) for i in self.base.encode(text)]


def used_token_ids(tokenizer, texts: list[str]) -> list[int]:
    """The original token ids a set of texts uses, start/end/padding included, ascending."""
    used = {0, tokenizer.sot_token_id, tokenizer.eot_token_id}
    for text in set(texts):
        used.update(tokenizer.encode(text))
    return sorted(used)


def prune_token_table(towers: ClipTowers, model_cfg: dict, texts: list[str]) -> tuple[ClipTowers, dict]:
    """Towers whose text token table keeps only the rows `texts` use, plus an <unk> row (their mean).

    Most of a small text tower is its 49408-row table; a bundle trained on a closed vocabulary needs
    a few hundred rows. Returns the new towers and model_cfg (vocab_size and token_ids set).
    """
    if model_cfg.get(TOKEN_IDS):
        return towers, model_cfg
    model = towers._default_text_tower()
    kept = used_token_ids(towers.tokenizer, texts)
    order = [kept[0], UNK_ID, *kept[1:]]  # padding row 0, <unk> next, the end token stays last
    old = model.token_embedding.weight.detach()
    rows = torch.stack([old[kept].mean(0) if i == UNK_ID else old[i] for i in order])
    model.token_embedding = torch.nn.Embedding(len(order), old.shape[1]).to(old.device)
    with torch.no_grad():
        model.token_embedding.weight.copy_(rows)
    model.vocab_size = len(order)
    new_cfg = {**model_cfg, "text_cfg": {**model_cfg["text_cfg"], "vocab_size": len(order)}, TOKEN_IDS: order}
    tokenizer = PrunedTokenizer(open_clip.tokenizer.SimpleTokenizer(context_length=towers.tokenizer.context_length), order)
    return ClipTowers(model, towers.preprocess, tokenizer, towers.dim, towers.device), new_cfg


def train_transform(model_cfg: dict):
    """open_clip's training-time image augmentation for a custom config."""
    return open_clip.image_transform(model_cfg["vision_cfg"].get("image_size", 224), is_train=True)


def load_custom(model_cfg: dict, weights: Path, device: str | None = None) -> ClipTowers:
    """A custom-config CLIP with trained weights from a bundle directory."""
    towers = build_custom(model_cfg, "cpu")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        towers.model.load_state_dict({k: v.float() for k, v in state.items()})
    except Exception as exc:  # torch raises pickle, zip, OS and shape errors for a bad file
        raise BundleError(f"cannot read the image/text weights {weights}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160] if str(exc) else ''}") from exc
    return ClipTowers(towers.model, towers.preprocess, towers.tokenizer, towers.dim, device)


def load_pretrained(model_name: str, pretrained: str | None, device: str | None = None) -> ClipTowers:
    """An open_clip model with weights from a pretrained tag (the cache, else the hub) or a local checkpoint.

    `model_name` is any open_clip model (also one from the clip_configs setting), or hf-hub:ORG/REPO,
    which brings its own config and weights. Weights already in the cache load without asking the hub.
    """
    add_model_configs()
    if model_name.startswith(HF_HUB_PREFIX):
        return _load_hub_model(model_name, device)
    _check_model(model_name)
    if not pretrained:
        raise WeightsMissing(f"open_clip {model_name}: no pretrained tag and no checkpoint file "
                             f"(name one as clip:{model_name}/TAG, or give --clip-weights FILE)")
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    checkpoint = _cached_checkpoint(model_name, pretrained, tag_cfg) if tag_cfg else pretrained
    if not tag_cfg and not Path(pretrained).expanduser().is_file():
        raise _unknown_weights(model_name, pretrained)
    if checkpoint is None and not hub_reachable():
        raise WeightsMissing(_missing_message(model_name, pretrained, OFFLINE))
    # open_clip takes only the download and the image preprocessing from a tag: loading the tag's cached
    # file with the tag's preprocessing is the same model, without the hub client's retries when offline.
    preprocess_cfg = {f"image_{k}": tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=str(Path(checkpoint).expanduser()) if checkpoint else pretrained, **preprocess_cfg)
    except Exception as exc:  # open_clip raises many types for a missing, unreachable or mismatched file
        if not tag_cfg:  # the user's own file is here: it does not fit the model
            raise BundleError(f"cannot load the open_clip checkpoint {pretrained} into {model_name}: "
                              f"{type(exc).__name__}: {_first_line(exc)}") from exc
        raise WeightsMissing(_missing_message(model_name, pretrained, exc)) from exc
    dim = open_clip.get_model_config(model_name)["embed_dim"]
    return ClipTowers(model, preprocess, open_clip.get_tokenizer(model_name), dim, device)


def _cached_checkpoint(model_name: str, tag: str, tag_cfg: dict) -> str | None:
    """The file open_clip downloaded for a pretrained tag before, or None."""
    source = tag_cfg.get("hf_hub") or tag_cfg.get("url", "")
    cached = cached_clip_file(model_name, tag, source) if source else None
    return str(cached) if cached else None


def _load_hub_model(model_name: str, device: str | None) -> ClipTowers:
    """An hf-hub:ORG/REPO model: its cached snapshot read as a local folder, else downloaded by open_clip."""
    cached = cached_hub_model(model_name)
    if cached is None and not hub_reachable():
        raise WeightsMissing(_missing_message(model_name, "", OFFLINE))
    name = f"local-dir:{cached}" if cached else model_name
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name)
        dim = open_clip.get_model_config(name)["embed_dim"]
    except Exception as exc:  # hub, JSON and shape errors alike
        raise WeightsMissing(_missing_message(model_name, "", exc)) from exc
    return ClipTowers(model, preprocess, open_clip.get_tokenizer(name), dim, device)


def hub_source(model_name: str, tag: str) -> str | None:
    """Where open_clip downloads a (model, tag) from: its hub entry or URL, None for an unknown pair."""
    add_model_configs()
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    return cfg.get("hf_hub") or cfg.get("url") or None


def add_model_configs() -> None:
    """Register the model configs of the clip_configs setting with open_clip (a folder of JSON files, or one)."""
    folder = settings.value("clip_configs")
    if not folder:
        return
    path = Path(folder)
    if not path.exists():
        raise BundleNotFound(f"clip_configs: no such file or folder {path}")
    if path not in _added_configs:
        open_clip.add_model_config(path)
        _added_configs.add(path)


_added_configs: set[Path] = set()
OFFLINE = ConnectionError("offline: the model hub is unreachable")


def _check_model(model_name: str) -> None:
    if open_clip.get_model_config(model_name) is None:
        raise BundleNotFound(f"open_clip has no model named '{model_name}' (see open_clip.list_models(); a custom "
                             "one needs its config JSON in the folder of the clip_configs setting)")


def _unknown_weights(model_name: str, pretrained: str) -> SearchEngineError:
    if any(c in pretrained for c in "/\\~") or Path(pretrained).suffix in {".bin", ".safetensors", ".pt", ".pth"}:
        return WeightsMissing(f"open_clip checkpoint {pretrained}: no such file")
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
    return BundleNotFound(f"open_clip has no pretrained tag '{pretrained}' for {model_name} (its tags: {tags})")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else ""


def _missing_message(model_name: str, pretrained: str, exc: Exception) -> str:
    how = (f"open_clip.create_model_and_transforms('{model_name}', pretrained='{pretrained}')" if pretrained
           else f"open_clip.create_model_and_transforms('{model_name}')")
    name = model_name + (f"/{pretrained}" if pretrained else "")
    return (f"cannot load open_clip weights {name} ({type(exc).__name__}: {_first_line(exc)}). Fetch them with "
            f"`searchengine models fetch` on a machine with internet (it runs {how}), or point --clip-weights "
            "or SEARCHENGINE_CLIP_WEIGHTS at the .bin/.safetensors file.")
