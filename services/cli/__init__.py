"""OnTrackio cli."""
