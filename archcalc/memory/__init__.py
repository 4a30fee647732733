"""Network -> bytes: the closed form (closed.py, perbatch.py, views.py), the training step's timeline
(timeline/), the CUDA caching allocator's replay (allocator.py), peaks (peaks.py) and budgets (budget.py)."""
