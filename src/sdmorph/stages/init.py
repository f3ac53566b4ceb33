"""`sdmorph init`: a small working song to start from (it passes `sdmorph validate`).

Its prompts use words the built-in `tiny` model knows, so its first render shows pictures.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdmorph.core.errors import SdmorphError
from sdmorph.formats.fsio import write_text
from sdmorph.formats.profile import SETTINGS_FILE
from sdmorph.formats.song import SCENES_FILE, SHEET_FILE

SHEET = """name,prompt,seeds,guidance_scale,negative_prompt
dawn,"a yellow sun over the sea",1001 1002 1003,7.5,
noon,"a white house in the desert",2001 2002 2003,7.5,
dusk,"a red sun over the forest at night",3001 3002 3003,8.0,
"""

SCENES = """,scene,duration,section,start,avoid
0,dawn,1,1,dawn_1001,
1,noon,1,1,,
2,dusk,2,2,random,
"""


def example_settings(model: str = "tiny") -> dict[str, object]:
    """A `default` profile on the built-in tiny model; `full` shows real-model settings."""
    return {
        "default": {
            "model_string": model,
            "res_width": 128,
            "res_height": 128,
            "interpolation_steps": 6,
            "noise": "cpu",
            "fps": 10,
            "pipe_kwargs": {"num_inference_steps": 8, "negative_prompt": ""},
            # The sheet's guidance 7.5 would blotch with tiny's own PNDM (render/tiny.py).
            **({"scheduler": "ddim"} if model == "tiny" else {}),
        },
        "full": {
            "model_string": "runwayml/stable-diffusion-v1-5",
            "res_width": 768,
            "res_height": 432,
            "interpolation_steps": 60,
            "pipe_kwargs": {"num_inference_steps": 25, "negative_prompt": "text, watermark"},
        },
    }


def write_example(meta_song: Path, force: bool = False) -> list[Path]:
    """Write the example song's three files; refuse to overwrite an existing song."""
    files = {
        meta_song / SHEET_FILE: SHEET,
        meta_song / SETTINGS_FILE: json.dumps(example_settings(), indent=2) + "\n",
        meta_song / SCENES_FILE: SCENES,
    }
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise SdmorphError(f"{existing[0]} already exists: not overwriting (use --force)")
    for path, text in files.items():
        write_text(path, text)
    return list(files)
