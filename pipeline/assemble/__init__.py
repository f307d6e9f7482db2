"""Per-asset assembly: observations + the consent join's verdicts -> the asset's AssetFaces."""

from .state import AssetAssembly, assemble

__all__ = ["AssetAssembly", "assemble"]
