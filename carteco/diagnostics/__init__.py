"""Land-access (foncier) diagnostics of a département: indicators, matching, report."""
