"""Release bundles: ``package`` a build folder, ``verify`` a bundle, ``keygen`` a signing key.

One module per job: ``build_folder`` reads what a build wrote, ``manifest`` (with the JSON
Schema in ``edgepack/schemas``) describes a bundle, ``runtime_requirements`` says what runs its
models, ``model_card`` and ``android_readme`` render it for people, ``layouts`` places its files,
``archive_writer`` writes it deterministically, ``signing`` signs its manifest,
``archive_safety`` opens an untrusted one, and ``packager`` and ``verifier`` tie them together.
"""

from __future__ import annotations

from .archive_safety import ArchiveLimits
from .packager import PackagedBundle, package
from .signing import keygen
from .verifier import ModelCheck, VerifyResult, verify

__all__ = ["ArchiveLimits", "ModelCheck", "PackagedBundle", "VerifyResult", "keygen", "package",
           "verify"]
