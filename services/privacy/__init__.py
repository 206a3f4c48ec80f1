"""OnTrackio privacy."""
