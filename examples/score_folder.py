"""Score a folder with charm's Python API and print the five best photos.

    python examples/score_folder.py ~/Photos                       # published aadb model (hub)
    python examples/score_folder.py ~/Photos --checkpoint aadb_charm.pth --pos-embed dino_small_pos.pt

The same steps the CLI runs, without the database: walk the folder, decode each photo once
(EXIF orientation, long side capped at 1024 px), score it with Charm, rank. Photos are named
by their path inside the folder.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from charmcli.library.decode import DEFAULT_MAX_PIXELS, DecodeError, load_image
from charmcli.library.scan import ScanEntry, display_path, iter_files
from charmcli.model import Scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", default="aadb")
    parser.add_argument("--checkpoint", type=Path, help="local official .pth or .safetensors file")
    parser.add_argument("--pos-embed", type=Path, help="local dino_small_pos.pt")
    parser.add_argument("--max-side", type=int, default=1024, help="long side in pixels (0: native size)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse larger images before decoding them (0: no limit)")  # fmt: skip
    args = parser.parse_args()

    if args.checkpoint:
        scorer = Scorer.from_files(args.checkpoint, args.pos_embed, name=args.model)
    else:
        scorer = Scorer.from_pretrained(args.model)  # downloads once into the Hugging Face cache

    def shown(path: str | os.PathLike[str]) -> str:
        return display_path(os.path.relpath(path, args.folder))

    scored: list[tuple[float, str, int]] = []
    for entry in iter_files([args.folder]):
        if not isinstance(entry, ScanEntry):
            print(f"skipped {shown(entry.path)}: {entry.reason}")
            continue
        try:
            photo = load_image(entry.path, max_side=args.max_side, max_pixels=args.max_pixels)
        except DecodeError as err:
            print(f"skipped {shown(entry.path)}: {err}")
            continue
        result = scorer.score(photo.image)
        scored.append((result.score, shown(entry.path), len(result.kept_cells)))

    scale = scorer.spec.scale if scorer.spec else "?"
    print(f"{len(scored)} photos scored with {scorer.name} (scale {scale}); the best:")
    for score, name, kept in sorted(scored, reverse=True)[:5]:
        print(f"  {score:7.3f}  {name}  ({kept} regions kept at full resolution)")


if __name__ == "__main__":
    main()
