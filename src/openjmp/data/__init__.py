"""openjmp.data."""
