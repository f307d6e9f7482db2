"""Video: sampled frames of a clip, and faces linked into tracks across them."""
