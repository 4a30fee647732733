"""What an import cannot map: each operation with its cause, its module path and its source line, grouped by cause."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import ArchcalcError

SHOWN = 3  # places listed per cause; the rest are counted


class Unmapped(Exception):
    """Raised by a mapping: `cause` is the same text wherever it happens, `path` the module path."""

    def __init__(self, cause: str, path: str = ""):
        super().__init__(f"{path}: {cause}" if path else cause)
        self.cause, self.path = cause, path


@dataclass(frozen=True)
class Problem:
    cause: str
    path: str = ""
    place: str = ""  # file:line of the code that makes it (or the graph node's name)

    def __str__(self) -> str:
        head = f"{self.path}: {self.cause}" if self.path else self.cause
        return f"{head} ({self.place})" if self.place else head


class ImportFailed(ArchcalcError):
    """A module that cannot be written as a spec: every operation archcalc cannot map, with its place."""

    def __init__(self, target: str, problems: list[Problem], capture: str = "torch.fx"):
        self.target, self.problems, self.capture = target, problems, capture
        super().__init__(self._message())

    def causes(self) -> list[tuple[str, list[Problem]]]:
        """The causes, the most frequent first (ties in order of appearance), each with its problems."""
        groups: dict[str, list[Problem]] = {}
        for problem in self.problems:
            groups.setdefault(problem.cause, []).append(problem)
        return sorted(groups.items(), key=lambda item: -len(item[1]))

    def _message(self) -> str:
        n = len(self.problems)
        causes = self.causes()
        lines = [f"{self.target}: cannot import {n} operation{'s' * (n > 1)} ({len(causes)} cause{'s' * (len(causes) > 1)}, "
                 f"captured with {self.capture}):"]
        for cause, problems in causes:
            if len(problems) == 1:
                lines.append(f"  1× {problems[0]}")
                continue
            places = [f"{p.path or 'top'} ({p.place})" if p.place else p.path or "top" for p in problems[:SHOWN]]
            more = f", and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
            lines.append(f"  {len(problems)}× {cause}\n      at {', '.join(places)}{more}")
        lines.append("  hint: archcalc writes a spec only when every operation maps onto a layer kind; "
                     "write the parts listed by hand, or wrap them in a module archcalc knows")
        return "\n".join(lines)


def place(stack_trace: str | None, fallback: str, torch_dir: str) -> str:
    """The innermost frame of a stack trace outside torch itself, as PACKAGE/file.py:LINE for installed
    packages (torchvision/models/resnet.py:102) and the file's name for the user's own (models.py:12)."""
    torch_dir = torch_dir.rstrip("/") + "/"  # site-packages/torchvision is not torch
    frames = [(f, n) for f, n in re.findall(r'File "([^"]+)", line (\d+)', stack_trace or "")
              if not f.startswith(torch_dir) and "/archcalc/backends/importer/" not in f]
    if not frames:
        return fallback
    file, line = frames[-1]
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in file:
            return f"{file.rsplit(marker, 1)[1]}:{line}"
    return f"{Path(file).name}:{line}"


# torchvision's detection models, by the pieces they are made of that archcalc has no layer for (what each does)
DETECTION = {
    "GeneralizedRCNNTransform": "the images resized to a common size and batched (GeneralizedRCNNTransform)",
    "AnchorGenerator": "anchor boxes per feature map (AnchorGenerator)",
    "DefaultBoxGenerator": "default boxes per feature map (DefaultBoxGenerator)",
    "RegionProposalNetwork": "proposals: box decoding and non-maximum suppression (RegionProposalNetwork)",
    "MultiScaleRoIAlign": "RoI pooling of each proposal (MultiScaleRoIAlign, torchvision.ops.roi_align)",
    "RoIHeads": "per-proposal heads, box decoding and non-maximum suppression (RoIHeads)",
    "RetinaNetHead": "per-anchor heads, box decoding and non-maximum suppression (RetinaNet's postprocessing)",
    "FCOSHead": "per-location heads, box decoding and non-maximum suppression (FCOS's postprocessing)",
    "SSDHead": "per-box heads, box decoding and non-maximum suppression (SSD's postprocessing)",
    "SSDLiteHead": "per-box heads, box decoding and non-maximum suppression (SSD's postprocessing)",
}


class DetectionRefused(ImportFailed):
    """A detection model: refused before any capture, with the pieces archcalc has no layer for."""

    def __init__(self, target: str, pieces: list[str], backbone: str | None):
        self.backbone = backbone
        super().__init__(target, [Problem(f"a detection model: archcalc has no layer for {what}") for what in pieces], "no capture")

    def _message(self) -> str:
        lines = [f"{self.target} is a detection model (a list of images of any size in, with their targets in training; "
                 "boxes out): archcalc has no layer for"]
        lines += [f"  - {p.cause.split('no layer for ', 1)[1]}" for p in self.problems]
        more = f" (model.backbone, a {self.backbone})" if self.backbone else ""
        lines.append(f"  hint: import its backbone{more}, which is a network archcalc can import; write the heads by hand")
        return "\n".join(lines)


def refuse_detection(module) -> None:
    """A detection model reads a list of images and their targets and ends in boxes: refused before any capture."""
    found = list(dict.fromkeys(DETECTION[type(m).__name__] for m in module.modules() if type(m).__name__ in DETECTION))
    if found:
        backbone = getattr(module, "backbone", None)
        raise DetectionRefused(type(module).__name__, found, type(backbone).__name__ if backbone is not None else None)
