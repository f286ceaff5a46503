"""openjmp.cli."""
