"""Thin transports over the sans-IO codecs in :mod:`zpctl.protocols`."""
