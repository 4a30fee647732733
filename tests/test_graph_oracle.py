"""Graphs against torch: placeholder for the drawn-graph oracle (filled in below in later commits)."""

MERGES = ("add", "mul", "concat")
