"""Lip-sync metrics."""
