"""Test-wide settings.

- One intra-op thread: on a 2-core machine PyTorch's worker threads spin while waiting for
  each other; with any other load present a tiny model runs 30-100x slower on 2 threads
  than on 1. The tests use tiny models, so one thread is both faster and steadier.
- Hypothesis derandomised: property tests explore the same examples on every run, so a
  failure in CI reproduces locally (exploration with fresh seeds: --hypothesis-profile=explore).
"""
import torch
from hypothesis import settings

torch.set_num_threads(1)

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("ci")
