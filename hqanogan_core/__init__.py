"""hqanogan_core: the package behind the HQ-AnoGAN book.

Layers (each imports only from the layers above it in this list):
  data/, nets/, metrics, swd, checkpoint, presets, paths, provenance
                  images and splits (data/splits is the one path from files to model input), networks,
                  metrics, safetensors checkpoint I/O
  train/          StyleGAN2-ADA, the pSp encoder and the generative baselines; one shared loop (train/loop)
  pretrained, pipeline, scores, recon, project
                  load shipped/trained networks (never training code) and score with them
  methods/        every detector behind one interface (fit / score / anomaly_map / info), registry METHODS
  benchmark, ablation, ship, tables, plots, widgets
                  one harness for every method, shipped results, figures and tables for the book
  cli             `python -m hqanogan_core ...`
"""

__version__ = "0.1.0"
