"""Where each benchmark of the paper comes from: URL, size, licence, checksum, and the manual steps.

Every row is data. ``mode`` says how ``diffsim datasets download`` gets the set: ``automatic`` (HTTP archives,
resumable), ``hub`` (a Hugging Face dataset repository) or ``manual`` (it must be requested or fetched by hand;
the row says how). ``folder`` is the sub-folder of ``--root`` the set lands in, which is also where
``diffsim reproduce`` looks for it. A published checksum is recorded in ``Part.sha256``; where the source
publishes none, ``checksum_note`` says so and the download records the SHA-256 it computed.

For tests and mirrors, ``$DIFFSIM_DATASETS_MIRROR`` (a base URL) replaces the host and path of every archive
URL: ``<mirror>/<part filename>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import DatasetError

MIRROR_ENV = "DIFFSIM_DATASETS_MIRROR"


@dataclass(frozen=True)
class Part:
    """One archive of a dataset and where its content goes.

    ``marker`` is a file or folder name that the top folder of the extracted layout contains (e.g. NIGHTS'
    ``data.csv``): after extraction the shallowest folder holding it becomes ``<root>/<folder>/<dest>``.
    """

    url: str
    filename: str
    archive: str  # "zip", "tar" (any compression), "rar" or "file"
    marker: str
    dest: str = ""  # sub-folder of the dataset folder ("" = the dataset folder itself)
    size: int | None = None  # bytes, where the source publishes it
    sha256: str | None = None  # where the source publishes it

    def resolved_url(self) -> str:
        mirror = os.environ.get(MIRROR_ENV, "").strip()
        return f"{mirror.rstrip('/')}/{self.filename}" if mirror else self.url


@dataclass(frozen=True)
class Source:
    """How to obtain benchmark ``dataset`` (a name of :func:`diffsim.datasets.list_datasets`)."""

    dataset: str
    title: str
    mode: str  # "automatic", "hub" or "manual"
    folder: str  # sub-folder of --root holding the layout the loader reads
    size: str  # human-readable, as the source states it
    licence: str
    homepage: str
    parts: tuple[Part, ...] = ()
    hub_repo: str | None = None
    checksum_note: str = ""
    manual: str = ""  # the steps, for manual sets (and a fallback for the others)
    extra: dict[str, str] = field(default_factory=dict)  # loader options the layout needs (e.g. ratings)

    @property
    def url(self) -> str:
        if self.parts:
            return self.parts[0].url
        if self.hub_repo:
            return f"https://huggingface.co/datasets/{self.hub_repo}"
        return self.homepage


_NO_SUM = "the source publishes no checksum: the SHA-256 of the download is computed and recorded"
_DRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="

_SOURCES: dict[str, Source] = {
    s.dataset: s
    for s in (
        Source(
            "nights",
            "NIGHTS (DreamSim, Fu et al. 2023)",
            "automatic",
            "nights",
            "about 58 GB unzipped",
            "MIT (dreamsim repository); images are Stable Diffusion 2.1 outputs",
            "https://github.com/ssundaram21/dreamsim",
            (Part("https://data.csail.mit.edu/nights/nights.zip", "nights.zip", "zip", "data.csv"),),
            checksum_note=_NO_SUM,
        ),
        Source(
            "dreambench",
            "DreamBench++ samples and human ratings (Peng et al. 2025)",
            "automatic",
            "dreambench_plus",
            "samples of 7 methods + human ratings (Google Drive; size not stated)",
            "Apache-2.0",
            "https://github.com/yuangpeng/dreambench_plus",
            (
                Part(
                    _DRIVE + "177GVdYtf0eAOpJO1F4pnoIB87TdVfw4R",
                    "dreambench_samples.zip",
                    "zip",
                    "*/src_image",
                    "samples",
                ),
                Part(
                    _DRIVE + "17FK9wHsKxTdIBo8_JkDCa3mU8-VJ3yLj",
                    "dreambench_human_rating.zip",
                    "zip",
                    "merged_data|raw_data",
                    "data_human_rating",
                ),
            ),
            checksum_note=_NO_SUM,
            manual=(
                "If Google Drive refuses the automatic download (quota), open "
                "https://drive.google.com/file/d/177GVdYtf0eAOpJO1F4pnoIB87TdVfw4R (samples) and "
                "https://drive.google.com/file/d/17FK9wHsKxTdIBo8_JkDCa3mU8-VJ3yLj (human ratings) in a browser, "
                "and unpack them as ROOT/dreambench_plus/samples/<method_dir>/... and "
                "ROOT/dreambench_plus/data_human_rating/{merged_data,raw_data}/..."
            ),
        ),
        Source(
            "cute",
            "CUTE (Kotar et al. 2023)",
            "manual",
            "CUTE",
            "about 10,000 images (datasheet)",
            "CC-BY-4.0",
            "https://purl.stanford.edu/gj714cj0414",
            checksum_note="the Stanford Digital Repository lists its files with their own checksums on the page",
            manual=(
                "Download the archive(s) from the Stanford Digital Repository, "
                "https://purl.stanford.edu/gj714cj0414 (DOI 10.25740/gj714cj0414), and unpack them so that "
                "ROOT/CUTE/<category>/<instance>/<condition>/*.jpg exists (one level of condition folders, "
                "names shared across the instances of a category)."
            ),
        ),
        Source(
            "ipbench",
            "IP bench (DiffSim authors)",
            "manual",
            "IPref",
            "299 characters x 7 images (paper)",
            "not stated",
            "https://huggingface.co/datasets/yiren98/IPref",
            checksum_note="not distributed in full: no checksum",
            manual=(
                "Not public in full: the Hugging Face copy (yiren98/IPref) holds only 5 reference images "
                "(showlab/DiffSim issue #3). Ask the authors (showlab/DiffSim) for the bench, then place it as "
                "ROOT/IPref/<cls>/<weight>.png and ROOT/IPA-bench/<cls>.JPG."
            ),
        ),
        Source(
            "tid2013",
            "TID2013 (Ponomarenko et al.)",
            "automatic",
            "tid2013",
            "about 908 MB (RAR archive)",
            "educational and research use only, without fee; keep the copyright notice",
            "http://www.ponomarenko.info/tid2013.htm",
            (Part("http://www.ponomarenko.info/tid2013/tid2013.rar", "tid2013.rar", "rar", "mos_with_names.txt"),),
            checksum_note=_NO_SUM + "; extracting a RAR needs unrar, 7z or bsdtar on PATH",
        ),
        Source(
            "sref",
            "Sref bench (DiffSim authors)",
            "hub",
            "Sref",
            "508 styles x 4 images (paper)",
            "not stated",
            "https://huggingface.co/datasets/yiren98/Sref",
            hub_repo="yiren98/Sref",
            checksum_note="the Hugging Face Hub checks every file against its own SHA-256",
        ),
        Source(
            "instantstyle",
            "InstantStyle bench (DiffSim authors)",
            "manual",
            "stylesim-test",
            "30 styles x 5 images (paper)",
            "not stated",
            "https://github.com/instantX-research/InstantStyle",
            checksum_note="not distributed: no checksum",
            manual=(
                "Not distributed (showlab/DiffSim issue #4). Ask the authors for their stylesim-test folder and "
                "place it as ROOT/stylesim-test/<style>/<images>."
            ),
        ),
        Source(
            "tiktok",
            "TikTok dataset (Jafarian and Park 2021)",
            "manual",
            "TikTok_dataset",
            "340 videos (authors' page)",
            "not stated",
            "https://www.yasamin.page/hdnet_tiktok",
            checksum_note="no checksum published",
            manual=(
                "Download the 'TikTok Dataset' from https://www.yasamin.page/hdnet_tiktok (link in the "
                "yasaminjafarian/HDNet_TikTok README) and unpack it as ROOT/TikTok_dataset/<video>/images/*.png."
            ),
        ),
    )
}


def list_sources() -> list[Source]:
    """Every benchmark's source, in the dataset registry's order."""
    return list(_SOURCES.values())


def source(name: str) -> Source:
    """The source row of dataset ``name``."""
    if name not in _SOURCES:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(_SOURCES)}")
    return _SOURCES[name]
