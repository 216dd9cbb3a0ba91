"""Pipelines: the checks before compute, the length plan's use, the OmniSync and X-Dub runs."""
