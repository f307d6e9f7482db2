"""Consent: the legal basis for naming a subject, and what it allows at a given moment."""
