"""Reference data shipped with Carteco (boundaries, stations, COG tables) and their loaders."""
