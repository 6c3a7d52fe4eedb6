"""Import row validation benchmark: the current code against an older commit."""
