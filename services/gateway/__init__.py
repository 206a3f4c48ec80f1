"""OnTrackio gateway."""
