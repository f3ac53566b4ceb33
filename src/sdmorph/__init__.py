"""sdmorph: morph a song's prompt sheet into a movie of Stable Diffusion transitions."""

__version__ = "0.1.0"
