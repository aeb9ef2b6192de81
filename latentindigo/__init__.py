"""LatentINDIGO: INN-guided latent diffusion for image restoration."""

__version__ = "0.1.0"  # the package's version (pyproject reads it); recipes record it


class UserError(ValueError):
    """A mistake the user can fix (a bad file, a bad parameter); `str()` is one line that says what."""
