"""The recognize stage: an uploaded asset -> faces, boxes and gallery candidates (no decisions)."""
