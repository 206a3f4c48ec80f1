"""OnTrackio inventory."""
