"""Responsible use: consent gate, restriction hook, provenance metadata / manifest, invisible watermark."""
