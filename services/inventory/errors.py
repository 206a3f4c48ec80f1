"""Inventory's domain errors."""

from ontrackio.core.errors import InvalidArgument, NotFound


class AssetNotFound(NotFound):
    pass


class InvalidAsset(InvalidArgument):
    pass
