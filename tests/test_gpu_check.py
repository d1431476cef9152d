"""benchmarks/gpu_check_gan.py: the parts that need no GPU (log summary, fail-fast without CUDA)."""
import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check_gan.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_gan", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_leaves_out_first_tick(gpu_check):
    lines = [{"kimg": 1.008, "s_per_kimg": 90.0, "peak_mem_mb": 900.0, "p": 0.0},
             {"kimg": 2.0, "s_per_kimg": 30.0, "peak_mem_mb": 1000.0, "p": 0.01},
             {"kimg": 3.008, "s_per_kimg": 40.0, "peak_mem_mb": 950.0, "p": 0.02}]
    s = gpu_check.summarise(lines)
    spans = [2.0 - 1.008, 3.008 - 2.0]
    assert s["s_per_kimg"] == pytest.approx((30 * spans[0] + 40 * spans[1]) / sum(spans))
    assert s["ticks_used"] == 2 and s["first_tick_s_per_kimg"] == 90.0 and s["peak_mem_mb_allocated"] == 1000.0
    with pytest.raises(ValueError, match="at least 2"):
        gpu_check.summarise(lines[:1])


def test_driver_only_changes_log_tick_and_swd(gpu_check):
    from hqanogan_core import presets

    before = dict(presets.PRESETS["paper256"])
    try:
        exec(gpu_check.DRIVER.split("from hqanogan_core.cli")[0], {})
        after = presets.PRESETS["paper256"]
        assert {k for k in after if after[k] != before.get(k)} == {"log_kimg", "swd_images"}
    finally:
        presets.PRESETS["paper256"] = before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_fails_fast_without_cuda(gpu_check, capsys):
    assert gpu_check.main(["--out", "/nonexistent/never-created"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
