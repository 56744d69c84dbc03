"""Where each file goes inside a bundle, per layout.

``plain`` is one flat folder. ``android`` mirrors an app module's ``src/main``: models and labels
under ``assets/<model>/`` (copy ``assets/`` into ``app/src/main/`` and open them through the
AssetManager as ``<model>/<file>``), reports under ``report/``, and the manifest, model card and
README at the top, where they document the bundle without being packed into the APK.
"""

from __future__ import annotations

import re

LAYOUTS = ("plain", "android")
#: roles whose files an app loads at run time
ASSET_ROLES = ("model", "reference-model", "model-sidecar", "labels")


def member_path(layout: str, role: str, filename: str, model_name: str) -> str:
    """The path of ``filename`` (with ``role``) inside a bundle of ``layout``."""
    if layout == "plain":
        return filename
    if role in ASSET_ROLES:
        return f"assets/{asset_folder(model_name)}/{filename}"
    if role == "report":
        return f"report/{filename}"
    return filename


def asset_folder(model_name: str) -> str:
    """An asset folder name Android's resource tools accept: lower case, digits and '_'."""
    return re.sub(r"[^a-z0-9_]+", "_", model_name.lower()).strip("_") or "model"
