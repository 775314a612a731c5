"""Accuracies (%) of the DiffSim paper's Table 1 (arXiv 2412.14580), for side-by-side reports.

DiffSim is DiffSim-S SD 1.5 as in Table 2: CUTE 72.06 and IP 92.04 (Table 1 prints 76.17, which is
DiffSim-C, and 91.84).
"""

from __future__ import annotations

DATASETS = ("nights", "dreambench", "cute", "ipbench", "tid2013", "sref", "instantstyle")
TITLES = {
    "nights": "NIGHTS",
    "dreambench": "DreamBench++",
    "cute": "CUTE",
    "ipbench": "IP",
    "tid2013": "TID2013",
    "sref": "Sref",
    "instantstyle": "InstantStyle",
    "tiktok": "TikTok",
}

TABLE1: dict[str, dict[str, float | None]] = {
    "LPIPS": dict(zip(DATASETS, (71.13, 62.33, 63.17, 84.01, 94.50, 87.85, 93.15), strict=False)),
    "Gram": dict(zip(DATASETS, (None, None, None, None, None, 84.05, 88.30), strict=False)),
    "CLIP": dict(zip(DATASETS, (82.26, 70.54, 72.71, 91.70, 90.33, 84.60, 82.90), strict=False)),
    "DINO v2": dict(zip(DATASETS, (85.24, 72.25, 77.27, 85.35, 91.50, 87.20, 86.10), strict=False)),
    "FFA": dict(zip(DATASETS, (77.78, 65.21, 76.55, 89.70, 75.17, 62.55, 60.65), strict=False)),
    "CLIP AAS": dict(zip(DATASETS, (82.18, 67.23, 71.78, 88.03, 96.33, 94.45, 97.80), strict=False)),
    "DINO v2 AAS": dict(zip(DATASETS, (86.47, 70.01, 77.04, 90.38, 95.83, 95.90, 96.65), strict=False)),
    "DiffSim": dict(zip(DATASETS, (86.52, 71.50, 72.06, 92.04, 94.17, 97.40, 99.05), strict=False)),
    "Ensemble": dict(zip(DATASETS, (89.43, 72.15, 77.78, 94.92, 95.00, 91.70, 88.30), strict=False)),
}


def paper_row(metric_name: str) -> str | None:
    """The Table 1 row of a metric, as its registry entry declares it (None if not in the table)."""
    from ..errors import ConfigError
    from ..registry import metric_info

    try:
        return metric_info(metric_name).paper_row
    except ConfigError:
        return None


def paper_value(metric_name: str, dataset: str, row: str | None = None) -> float | None:
    """The paper's accuracy (%) for a metric (or an explicit Table 1 ``row``) on ``dataset``."""
    row = row or paper_row(metric_name)
    return TABLE1[row].get(dataset) if row in TABLE1 else None
