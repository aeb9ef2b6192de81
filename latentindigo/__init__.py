"""LatentINDIGO: INN-guided latent diffusion for image restoration."""

from latentindigo.errors import UserError

__version__ = "0.2.0"  # the package's version (pyproject reads it); recipes record it
__all__ = ["LatentIndigoPipeline", "UserError", "__version__"]


def __getattr__(name: str):
    # the diffusers pipeline on demand: `import latentindigo` stays light (the demo serves its page first)
    if name == "LatentIndigoPipeline":
        from latentindigo.pipeline import LatentIndigoPipeline

        return LatentIndigoPipeline
    raise AttributeError(f"module 'latentindigo' has no attribute {name!r}")
