"""The biometric index: consenting subjects' reference faceprints, searchable by embedding."""

from .index import GalleryIndex, GalleryUnavailable, Match, open_gallery

__all__ = ["GalleryIndex", "GalleryUnavailable", "Match", "open_gallery"]
