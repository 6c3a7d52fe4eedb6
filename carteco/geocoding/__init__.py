"""Geocoding: address reference, local engine, BAN-compatible backends, registry placement."""
