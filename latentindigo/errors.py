"""The exception for a user's mistake, in a module of its own: every module raises it, and the package's root,
which lazily imports the pipeline, would otherwise be imported back by all of them."""


class UserError(ValueError):
    """A mistake the user can fix (a bad file, a bad parameter); `str()` is one line that says what."""
