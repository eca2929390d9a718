"""Model bundles: image, text and speech encoders sharing one embedding space."""

from .bundle import Bundle, load_bundle
from .registry import BundleSpec, default_bundle_name, list_bundles

__all__ = ["Bundle", "BundleSpec", "default_bundle_name", "list_bundles", "load_bundle"]
