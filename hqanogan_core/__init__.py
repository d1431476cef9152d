"""hqanogan_core: the package behind the HQ-AnoGAN book.

Modules (dependencies point downwards in this list's reverse):
  data/      phantom, MVTec-layout dataset, converters, preprocessing
  metrics    image/pixel metrics with bootstrap confidence intervals
  floors     trivial pixel-statistics detectors the benchmark must beat
  benchmark  one harness that scores every method the same way
  plots      figure helpers used by the book
  cli        `python -m hqanogan_core ...`
"""

__version__ = "0.1.0"
