"""Many pictures read for ``lenet predict``: every picture's candidate digit fields in one array for the
classifier, each picture's :class:`~lenet_cli.reading.pipeline.Proposal` kept to decide its text."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lenet_cli.errors import LenetError
from lenet_cli.images.decode import BadImage, read_grayscale, read_image
from lenet_cli.images.explain import write_all as draw_steps
from lenet_cli.images.files import _listing, _rank_zero, _warn, collect
from lenet_cli.reading.pipeline import Proposal, propose


@dataclass
class Proposals:
    """The pictures of ``--data.predict_path`` ready for a classifier: every candidate digit field of every
    readable picture in one array, and for each picture its file and its :class:`Proposal`."""

    fields: np.ndarray  # uint8 (M, 28, 28): the pictures' fields one after the other
    sources: list[str]  # one per picture
    proposals: list[Proposal]  # one per picture; its fields are fields[offsets[i] : offsets[i + 1]]
    offsets: np.ndarray  # int64 (len(sources) + 1,)


def load_proposals(path: str | Path, num_workers: int = 0, explain_dir: str | Path | None = None) -> Proposals:
    """The candidate digit fields (``reading.pipeline.propose``) of the image file, folder or glob ``path``.

    As ``images.files.load_digits``, but a picture with no digit is kept (its proposal has no field and a note)
    and only undecodable files are skipped. With ``explain_dir`` every picture's steps are drawn, a
    refused one with its reason.
    """
    files, single = collect(str(path))
    explain = explain_dir is not None

    def attempt(file: Path) -> tuple[Proposal, Image.Image | None] | BadImage:
        try:
            proposal = propose(read_grayscale(file, str(file)), str(file))
            return proposal, read_image(file, str(file), colour=True) if explain else None
        except BadImage as error:
            return error

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if num_workers > 0 and len(files) > 1:
            with ThreadPoolExecutor(max_workers=num_workers) as pool:
                results = list(pool.map(attempt, files))
        else:
            results = [attempt(file) for file in files]
    failures = [result for result in results if isinstance(result, BadImage)]
    if single and failures:
        raise failures[0]
    kept = [(file, result) for file, result in zip(files, results, strict=True) if not isinstance(result, BadImage)]
    if not kept:
        raise LenetError(
            f"none of the {len(files)} files of {path} is a readable digit image: {_listing(failures, '; ')}"
        )
    if failures:
        listing = _listing(failures, "\n  ")
        unreadable = f"{len(failures)} of {len(files)} files of {path} that are not readable images"
        _warn(f"warning: skipped {unreadable}:\n  {listing}")
    if explain_dir is not None and _rank_zero():
        draw_steps(
            Path(explain_dir), [(file, image, proposal.steps, proposal.note) for file, (proposal, image) in kept]
        )
    proposals = [proposal for _, (proposal, _) in kept]
    counts = [len(proposal.fields) for proposal in proposals]
    fields = (
        np.concatenate([proposal.fields for proposal in proposals]) if sum(counts) else np.zeros((0, 28, 28), np.uint8)
    )
    return Proposals(fields, [str(file) for file, _ in kept], proposals, np.concatenate([[0], np.cumsum(counts)]))
