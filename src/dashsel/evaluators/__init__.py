"""Evaluators: turn a dataset choice into a reward."""
