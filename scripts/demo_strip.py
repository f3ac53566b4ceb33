"""Draw the README's strip of one demo transition (every other frame, numbered).

    make demo && .venv/bin/python scripts/demo_strip.py

reads `sdmorph-demo/media/harbour/transition_images/<FOLDER>` and writes docs/demo-strip.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from sdmorph.media.contact_sheet import contact_sheet

ROOT = Path(__file__).resolve().parent.parent
FOLDER = "sunrise-13 to forest-21"  # the sea at sunrise becoming a forest: a visible snap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=ROOT / "sdmorph-demo/media/harbour")
    parser.add_argument("--folder", default=FOLDER)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/demo-strip.png")
    args = parser.parse_args()
    frames = sorted((args.media / "transition_images" / args.folder).glob("frame*.png"))
    if not frames:
        raise SystemExit(f"no frames in {args.media / 'transition_images' / args.folder}: "
                         "run `make demo` first")
    picked = sorted({*range(0, len(frames), 2), len(frames) - 1})
    tiles = [(str(i), Image.open(frames[i]).convert("RGB")) for i in picked]
    contact_sheet(tiles, columns=len(tiles)).save(args.out)
    print(f"wrote {args.out} ({len(tiles)} of {len(frames)} frames)")


if __name__ == "__main__":
    main()
