//! Unit tests: one per upstream error message, and the small pure helpers.
