"""OnTrackio identity."""
