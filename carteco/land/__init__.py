"""Land (foncier) layers: DVF transactions, available sites, declared needs and QPV outlines."""

from carteco.land.importers import KINDS, run_land_import

__all__ = ["KINDS", "run_land_import"]
