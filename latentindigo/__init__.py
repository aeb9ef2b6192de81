"""LatentINDIGO: INN-guided latent diffusion for image restoration."""

__version__ = "0.2.0"  # the package's version (pyproject reads it); recipes record it


class UserError(ValueError):
    """A mistake the user can fix (a bad file, a bad parameter); `str()` is one line that says what."""


def __getattr__(name: str):
    # the diffusers pipeline on demand: `import latentindigo` stays light (the demo serves its page first)
    if name == "LatentIndigoPipeline":
        from latentindigo.pipeline import LatentIndigoPipeline

        return LatentIndigoPipeline
    raise AttributeError(f"module 'latentindigo' has no attribute {name!r}")
