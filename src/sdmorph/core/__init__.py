"""Pure logic: no files, no torch. Path planning, story choice, timing, interpolation math."""
