"""distillab: cache a teacher once, train students under a controlled comparison, audit what transferred."""

__version__ = "0.1.0"
