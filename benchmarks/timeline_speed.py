"""Speed of the memory timeline: a 2,000-layer network, concrete batch and B a symbol.

    PYTHONPATH=. python3 benchmarks/timeline_speed.py
"""

import time

import archcalc
from archcalc.memory.timeline import simulate

layers = "".join('[[layers]]\ntype = "dense"\nout_features = 64\nactivation = "relu"\n' for _ in range(1000))
layers += "".join('[[layers]]\ntype = "dropout"\np = 0.1\n' for _ in range(1000))
report = archcalc.analyze(archcalc.loads("[model]\ninput = [64]\n" + layers), optimizer="adam")
for batch in (32, None):
    start = time.perf_counter()
    line = simulate(report, batch)
    seconds = time.perf_counter() - start
    print(f"{len(report.rows)} layers, batch {batch or 'B'}: {seconds:.3f} s, peak {line.peak(batch)}")
