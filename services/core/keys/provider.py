"""The key provider a process's settings name (``kms_provider``)."""

from __future__ import annotations

from ontrackio.core.config import Settings
from ontrackio.core.keys.kms import KeyProvider


def from_settings(settings: Settings) -> KeyProvider:
    """`local` (development only: refused otherwise, with a ConfigError) or `aws`."""
    if settings.kms_provider == "aws":
        from ontrackio.core.keys.aws import AwsKms

        return AwsKms.from_settings(settings)
    from ontrackio.core.keys.local import LocalKms

    return LocalKms.from_settings(settings)
