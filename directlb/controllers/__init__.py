"""Reconcilers (service, ingress, readiness gates, webhook guardian) and their manager."""
