"""Reconciliation with the official registers: SIRENE stock (INSEE) and RNA waldec export."""

from carteco.reconcile.engine import ReconcileReport, reconcile_file
from carteco.reconcile.formats import SIRENE_KINDS, WALDEC

__all__ = ["SIRENE_KINDS", "WALDEC", "ReconcileReport", "reconcile_file"]
