"""openjmp.io."""
