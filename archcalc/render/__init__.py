"""Reports, verdicts and examples as rich renderables, markdown, csv, JSON and pictures (draw.py, with the
optional matplotlib). Returns what the CLI prints; never prints itself."""
