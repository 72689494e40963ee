"""Deployment: the shipped service files, ``install``, ``doctor`` and ``trust``."""
