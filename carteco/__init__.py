"""Carteco: the PostGIS registry and map of the social and solidarity economy (ESS)."""

__version__ = "0.1.0"
