"""The consent join: one partition of subjects, their consent, their faceprints, their purges."""
