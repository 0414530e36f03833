"""The GPU check: its CPU-only path says why it did nothing and exits 0; its peaks and MFU arithmetic."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_check import UNKNOWN, Measured, bf16_peak_tflops, mfu, report

ROOT = Path(__file__).resolve().parents[1]


def test_without_cuda_the_check_skips_with_a_message_and_exit_0():
    import torch

    if torch.cuda.is_available():
        pytest.fail("this test is the CPU-only path; on a GPU machine run bench/gpu_check.sh instead")
    out = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=False, env={"PY": sys.executable, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "[bench] gpu: skipped: no CUDA GPU here" in out.stdout and "nothing was run" in out.stdout


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0), ("NVIDIA L4", 121.0),
    ("NVIDIA L40S", 362.0), ("NVIDIA A10G", 70.0), ("NVIDIA A10", 125.0), ("Tesla T4", None),
])
def test_bf16_peaks_by_device_name(name, peak):
    assert bf16_peak_tflops(name) == peak


def test_mfu_is_three_forward_passes_of_flops_per_image_over_the_peak():
    # ResNet-50 at 224 px: 4.11 GMACs, 8.22 GFLOPs forward; 3,000 img/s train 74 TFLOP/s: 7.5% of an H100's 989.
    assert mfu(3000, 8.22e9, 989.0) == pytest.approx(3000 * 3 * 8.22e9 / 989e12)
    assert mfu(3000, 8.22e9, 989.0) == pytest.approx(0.07481, abs=1e-4)
    assert mfu(3000, 8.22e9, None) is None


def test_report_table_names_each_path_its_ratio_and_mfu():
    rows = [Measured("orchestrator (Ray task, train_classifier)", 2700.0, 60.0),
            Measured("bare loop, same DataLoader", 3000.0, 30.0), Measured("bare loop, batches on the GPU", 3300.0, 5.0)]
    text = report(rows, 8.22e9, "NVIDIA H200", 989.0)
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    assert "0.900" in lines["orchestrator (Ray task, train_classifier)"]  # 2,700 / 3,000 img/s
    assert " 6.7% " in lines["orchestrator (Ray task, train_classifier)"]  # 2,700 x 3 x 8.22 GFLOP / 989 TFLOP/s
    assert " 8.2% " in lines["bare loop, batches on the GPU"] and "1.100" in lines["bare loop, batches on the GPU"]
    unknown = report(rows, 8.22e9, "Tesla T4", None)
    assert UNKNOWN in unknown and "%" not in unknown.split("\n", 3)[3]  # no MFU column values without a peak
