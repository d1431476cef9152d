"""Test-wide settings: one intra-op thread.

On a 2-core machine PyTorch's worker threads spin while waiting for each other; with any
other load present a tiny model runs 30-100x slower on 2 threads than on 1. The tests use
tiny models, so one thread is both faster and steadier.
"""
import torch

torch.set_num_threads(1)
