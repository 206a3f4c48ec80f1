"""OnTrackio core."""
