"""OnTrackio evidence."""
