"""OnTrackio backend services (import root: ontrackio)."""
