"""The Observatoire: territorial panoramas and coverage (distance to the nearest structure)."""
