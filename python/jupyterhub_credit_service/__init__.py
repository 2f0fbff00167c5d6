"""Credit quotas for JupyterHub.

Mix ``CreditsAuthenticator`` into your authenticator and ``CreditsSpawner``
into your spawner; the credit service (a Rust binary installed with this
package) runs beside the hub as a managed JupyterHub service.
"""

from . import hubsetup
from .authenticator import CreditsAuthenticator
from .errors import CreditsException
from .spawner import CreditsSpawner

#: Template directory with the header credits badge; JupyterHub's
#: ``template_paths`` gets it automatically, or set it yourself.
template_paths = [hubsetup.TEMPLATES]

__all__ = ["CreditsAuthenticator", "CreditsSpawner", "CreditsException", "template_paths"]

hubsetup.install_at_import()
