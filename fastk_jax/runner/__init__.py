"""Runners: a study, a sweep or a theory study into a run folder."""
