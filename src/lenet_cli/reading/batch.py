"""Many pictures read for ``lenet predict``: every picture's candidate digit fields in one array for the
classifier, each picture's :class:`~lenet_cli.reading.pipeline.Proposal` kept to decide its text."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lenet_cli.images.decode import read_grayscale, read_image
from lenet_cli.images.explain import write_all as draw_steps
from lenet_cli.images.files import decode_each, rank_zero
from lenet_cli.reading.pipeline import Proposal, propose


@dataclass
class Proposals:
    """The pictures of ``--data.predict_path`` ready for a classifier: what it reads of every readable
    picture (``Proposal.inputs``: the candidate digit fields and their views) in one array, and for each
    picture its file and its :class:`Proposal`."""

    inputs: np.ndarray  # uint8 (M, 28, 28): the pictures' inputs one after the other
    sources: list[str]  # one per picture
    proposals: list[Proposal]  # one per picture; its inputs are inputs[offsets[i] : offsets[i + 1]]
    offsets: np.ndarray  # int64 (len(sources) + 1,)
    skipped: list[str] = field(default_factory=list)  # the files that are no readable image


def load_proposals(path: str | Path, num_workers: int = 0, explain_dir: str | Path | None = None) -> Proposals:
    """The candidate digit fields (``reading.pipeline.propose``) of the image file, folder or glob ``path``.

    Files are read as ``images.files.decode_each`` says; a picture with no digit is kept (its proposal has no
    field and a note): only undecodable files are skipped. With ``explain_dir`` every picture's steps are drawn, a
    refused one with its reason.
    """
    explain = explain_dir is not None

    def attempt(file: Path) -> tuple[Proposal, Image.Image | None]:
        proposal = propose(read_grayscale(file, str(file)), str(file))
        return proposal, read_image(file, str(file), colour=True) if explain else None

    skipped: list[Path] = []
    kept = decode_each(path, attempt, num_workers, skipped=skipped)
    if explain_dir is not None and rank_zero():  # one rank draws
        draw_steps(
            Path(explain_dir), [(file, image, proposal.steps, proposal.note) for file, (proposal, image) in kept]
        )
    proposals = [proposal for _, (proposal, _) in kept]
    counts = [len(proposal.inputs) for proposal in proposals]
    inputs = (
        np.concatenate([proposal.inputs for proposal in proposals]) if sum(counts) else np.zeros((0, 28, 28), np.uint8)
    )
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return Proposals(inputs, [str(file) for file, _ in kept], proposals, offsets, [str(file) for file in skipped])
