"""Peak dense TFLOP/s of common GPUs, by precision: what `bench` divides the achieved rate by.

From the vendors' datasheets, dense (without the 2:4 sparsity the headline figures
assume), tensor cores where the precision has them; float16 and bfloat16 with
float32 accumulation, as PyTorch computes. "tf32" is float32 on tensor cores:
cuDNN uses it for convolutions by default, and matmuls do with `--tf32`.
Override any of them with `bench --peak-tflops`.
"""

from __future__ import annotations

import re

# (a word of torch.cuda.get_device_name(), the datasheet's name, {precision: TFLOP/s}); more specific names first.
PEAKS: tuple[tuple[str, str, dict[str, float]], ...] = (
    ("H200 NVL", "H200 NVL", {"float64": 60, "float32": 60, "tf32": 417.5, "bfloat16": 835.5, "float16": 835.5}),
    ("H200", "H200 SXM", {"float64": 67, "float32": 67, "tf32": 494.7, "bfloat16": 989.4, "float16": 989.4}),
    ("H100 NVL", "H100 NVL", {"float64": 60, "float32": 60, "tf32": 417.5, "bfloat16": 835.5, "float16": 835.5}),
    ("H100 PCIe", "H100 PCIe", {"float64": 51.2, "float32": 51.2, "tf32": 378, "bfloat16": 756, "float16": 756}),
    ("H100", "H100 SXM", {"float64": 67, "float32": 67, "tf32": 494.7, "bfloat16": 989.4, "float16": 989.4}),
    ("A100", "A100", {"float64": 19.5, "float32": 19.5, "tf32": 156, "bfloat16": 312, "float16": 312}),
    ("L40S", "L40S", {"float32": 91.6, "tf32": 183, "bfloat16": 362, "float16": 362}),
    ("L40", "L40", {"float32": 90.5, "tf32": 90.5, "bfloat16": 181, "float16": 181}),
    ("L4", "L4", {"float32": 30.3, "tf32": 60, "bfloat16": 121, "float16": 121}),
    ("RTX 4090", "GeForce RTX 4090", {"float64": 1.3, "float32": 82.6, "tf32": 82.6, "bfloat16": 165.2, "float16": 165.2}),
    ("V100", "V100 SXM2", {"float64": 7.8, "float32": 15.7, "float16": 125}),
    ("T4", "T4", {"float32": 8.1, "float16": 65}),
)


def peak(device_name: str, precision: str) -> tuple[float, str] | None:
    """(TFLOP/s, the datasheet's name) for a device and a precision, or None when the table has no figure."""
    for pattern, name, figures in PEAKS:
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(pattern)}(?![A-Za-z0-9])", device_name, re.IGNORECASE):
            return (figures[precision], name) if precision in figures else None
    return None
