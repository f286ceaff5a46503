"""openjmp.train."""
