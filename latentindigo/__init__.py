"""LatentINDIGO: INN-guided latent diffusion for image restoration."""


class UserError(ValueError):
    """A mistake the user can fix (a bad file, a bad parameter); `str()` is one line that says what."""
