"""Errors the plugin raises."""

from tornado import web


class CreditsException(web.HTTPError):
    """A spawn refused for credits (403); the message tells the user why.

    Raised from the spawner's pre-spawn hook, so JupyterHub shows the message
    on the spawn page and in the spawn's progress events.
    """

    def __init__(self, message: str, status_code: int = 403):
        super().__init__(status_code, log_message=message, reason="Not enough credits")
        self.message = message
        # JupyterHub shows `jupyterhub_message` of a spawn error to the user.
        self.jupyterhub_message = message

    def __str__(self) -> str:
        return self.message


class CreditsConfigError(ValueError):
    """A credits setting (or what a callable returned) is invalid."""
