"""Floating-point types a network can be stored and trained in."""

from __future__ import annotations

from enum import StrEnum


class DType(StrEnum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float64 = "float64"

    @property
    def bytes(self) -> int:
        return {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}[self.value]
